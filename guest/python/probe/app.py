"""A probe task for the host's tests: what a Python component can do and reach.

Input: a command string; output: a string (both bincode, see sandpool_task).
  "echo:TEXT"  returns TEXT
  "spin"       loops for ever (the deadline must stop it)
  "alloc:N"    allocates N bytes (the memory cap must stop it)
  "print"      writes to stdout and stderr, then returns "printed"
  "raise"      raises ValueError (the task fails with its traceback)
  "reach"      returns JSON: the environment, the root directory, a socket attempt
  "read:PATH"  returns the text of the file at PATH
  "write:PATH" writes "written" to PATH, returns "wrote" or the error's class
  "call:NAME"  calls host capability NAME with an empty request (the probe
               declares none, so the host must refuse it)
"""

import json
import os
import sys

import sandpool_task as sp


def reach() -> str:
    found = {"env": dict(os.environ), "argv": sys.argv[1:]}
    try:
        found["root"] = sorted(os.listdir("/"))
    except Exception as e:
        found["root"] = f"denied: {type(e).__name__}"
    try:
        with open("/etc/passwd") as f:
            found["passwd"] = f.read(10)
    except Exception as e:
        found["passwd"] = f"denied: {type(e).__name__}"
    try:
        import socket
        socket.create_connection(("127.0.0.1", 22), timeout=1)
        found["socket"] = "connected"
    except Exception as e:
        found["socket"] = f"denied: {type(e).__name__}"
    return json.dumps(found, sort_keys=True)


def probe(command: str) -> str:
    if command.startswith("echo:"):
        return command[5:]
    if command == "spin":
        n = 0
        while True:
            n += 1
    if command.startswith("alloc:"):
        block = bytearray(int(command[6:]))
        return f"allocated {len(block)}"
    if command == "print":
        print("hello from python")
        print("x" * 10000, file=sys.stderr)
        return "printed"
    if command == "raise":
        raise ValueError("the probe was asked to fail")
    if command == "reach":
        return reach()
    if command.startswith("call:"):
        return sp.call(command[5:], b"").hex()
    if command.startswith("read:"):
        with open(command[5:]) as f:
            return f.read()
    if command.startswith("write:"):
        try:
            with open(command[6:], "w") as f:
                f.write("written")
            return "wrote"
        except OSError as e:
            return f"denied: {type(e).__name__}"
    raise ValueError(f"unknown command {command!r}")


@sp.task(decode=sp.text, encode=sp.encode_text)
def run(command: str) -> str:
    return probe(command)


WitWorld = run.world
