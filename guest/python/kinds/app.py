"""The three output kinds of `sandpool run` from Python (docs/abi.md, "Output kinds").

Input: a file (sandpool run's FileInput). By the file's name:
  *.raw    -> raw bytes: the text upper-cased, written to `{id}.txt`
  *.many   -> named files: `lines.txt` (one line count) and `first.txt`
              (the first line), written to the folder `{id}.files/`
  anything else -> JSON: {"bytes": N}
"""

import sandpool_task as sp


def encode(value) -> bytes:
    kind, payload = value
    if kind == "raw":
        return sp.raw_output(payload)
    if kind == "files":
        return sp.files_output(payload)
    return sp.json_value(payload)


@sp.task(decode=sp.file_input, encode=encode)
def run(file: sp.FileInput):
    text = file.text()
    if file.name.endswith(".raw"):
        return "raw", ("txt", text.upper().encode())
    if file.name.endswith(".many"):
        first = text.split("\n", 1)[0]
        return "files", {"lines.txt": str(text.count("\n")).encode(), "first.txt": first.encode()}
    return "json", {"bytes": len(file.data)}


WitWorld = run.world
