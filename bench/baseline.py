"""The Python baseline: read, parse and transform DYNAMODB_JSON exports the
simplest way (gzip, json.loads, a dict per item with new keys), as a
20-line script would. Prints the records read.

    python3 bench/baseline.py EXPORTS_FILE   (lines of TABLE=EXPORT_DIR)
"""
import glob, gzip, json, sys

read = 0
for line in open(sys.argv[1]):
    table, _, folder = line.strip().partition("=")
    for path in sorted(glob.glob(folder.rstrip("/") + "/data/*.json.gz")):
        with gzip.open(path, "rt") as f:
            for text in f:
                item = json.loads(text)["Item"]
                first = next(iter(item.values()), {"S": ""})
                key = str(next(iter(first.values())))
                out = dict(item)
                out["pk"] = {"S": table.upper() + "#" + key}
                out["sk"] = {"S": "META#" + key}
                out["entityType"] = {"S": table}
                read += 1
print(read)
