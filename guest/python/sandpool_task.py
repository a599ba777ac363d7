"""The Python side of a sandpool component task: the boundary encoding.

A sandpool task receives its input and returns its output as bincode 2
(standard config) bytes, the same bytes an ABI v1 module sees (docs/abi.md):
integers are variable-length (below 251: one byte; 251/252/253 then a
little-endian u16/u32/u64), strings and byte strings are a length then the
bytes, a struct is its fields in order. This module reads and writes that,
and `task` turns a plain function into the component's `run` export:

    import sandpool_task as sp

    @sp.task(decode=sp.file_input, encode=sp.json_value)
    def run(file):
        return {"name": file.name, "bytes": len(file.data)}

    WitWorld = run.world   # what componentize-py looks for in `app`

An exception in the function becomes the task's failure message
(sandpool's Error::Guest); bad input bytes become one that names the
problem. Nothing here needs more than the Python standard library.

Besides JSON, a task run by `sandpool run` may return raw bytes
(`encode=sp.raw_output`, the function returning `(ext, data)`) or named
files (`encode=sp.files_output`, the function returning `{name: data}`):
docs/abi.md, "Output kinds". `call(name, request)` calls a host capability
the component declares (a `capabilities.txt` beside its app.py, one name a
line; scripts/build-components.sh stores it in the component) and the pool
grants.
"""

import gc
import json
import traceback
from typing import Any, Callable, Iterable, NamedTuple

try:
    # The bindings exist only while componentize-py builds the component:
    # imported here, at build time, they are part of the snapshot.
    from wit_world.imports import capabilities as _capabilities
except ImportError:  # plain Python (tests of the encoders)
    _capabilities = None

__all__ = [
    "Reader", "Writer", "FileInput", "file_input", "encode_file_input", "json_value", "u64", "text", "encode_text",
    "encode_u64", "raw_output", "files_output", "call", "task",
]


class InputError(Exception):
    """The input bytes are not an encoding of the task's input type."""


class Reader:
    """Reads bincode values from `data`, front to back."""

    def __init__(self, data: bytes):
        self.data = memoryview(data)
        self.pos = 0

    def _take(self, n: int) -> memoryview:
        if n > len(self.data) - self.pos:
            raise InputError(f"input ends at byte {len(self.data)}, {n} more bytes wanted at {self.pos}")
        piece = self.data[self.pos:self.pos + n]
        self.pos += n
        return piece

    def u64(self) -> int:
        """A variable-length unsigned integer (bincode's varint)."""
        first = self._take(1)[0]
        if first < 251:
            return first
        width = {251: 2, 252: 4, 253: 8}.get(first)
        if width is None:
            raise InputError(f"invalid integer tag {first} at byte {self.pos - 1}")
        return int.from_bytes(self._take(width), "little")

    def bytes(self) -> bytes:
        """A length-prefixed byte string (`Vec<u8>` with serde_bytes)."""
        return bytes(self._take(self.u64()))

    def str(self) -> str:
        """A length-prefixed UTF-8 string."""
        raw = self._take(self.u64())
        try:
            return str(raw, "utf-8")
        except UnicodeDecodeError as e:
            raise InputError(f"a string is not valid UTF-8: {e}") from None

    def end(self) -> None:
        """Refuses trailing bytes (as the Rust SDK does)."""
        if self.pos != len(self.data):
            raise InputError(f"{len(self.data) - self.pos} trailing bytes after the input value")


class Writer:
    """Builds bincode bytes."""

    def __init__(self):
        self.out = bytearray()

    def u64(self, n: int) -> "Writer":
        if n < 0 or n >= 1 << 64:
            raise ValueError(f"{n} does not fit a u64")
        if n < 251:
            self.out.append(n)
        elif n < 1 << 16:
            self.out.append(251)
            self.out += n.to_bytes(2, "little")
        elif n < 1 << 32:
            self.out.append(252)
            self.out += n.to_bytes(4, "little")
        else:
            self.out.append(253)
            self.out += n.to_bytes(8, "little")
        return self

    def bytes(self, b: bytes) -> "Writer":
        self.u64(len(b))
        self.out += b
        return self

    def str(self, s: str) -> "Writer":
        return self.bytes(s.encode("utf-8"))


class FileInput(NamedTuple):
    """The input `sandpool run` passes: a file's relative name and its bytes."""
    name: str
    data: bytes

    def text(self) -> str:
        """The bytes as UTF-8, invalid sequences replaced by U+FFFD (as in Rust)."""
        return self.data.decode("utf-8", errors="replace")


def file_input(data: bytes) -> FileInput:
    """Decodes a `FileInput` (name: String, data: bytes)."""
    r = Reader(data)
    value = FileInput(r.str(), r.bytes())
    r.end()
    return value


def encode_file_input(name: str, data: bytes) -> bytes:
    """Encodes a `FileInput`, e.g. a sample input for `task(warm=...)`."""
    return bytes(Writer().str(name).bytes(data).out)


def u64(data: bytes) -> int:
    """Decodes a `u64` input."""
    r = Reader(data)
    value = r.u64()
    r.end()
    return value


def text(data: bytes) -> str:
    """Decodes a `String` input."""
    r = Reader(data)
    value = r.str()
    r.end()
    return value


def json_value(value: Any) -> bytes:
    """Encodes an output for the host's `Json<T>`: a string holding compact JSON."""
    doc = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return bytes(Writer().str(doc).out)


def encode_text(value: str) -> bytes:
    """Encodes a `String` output."""
    return bytes(Writer().str(value).out)


def encode_u64(value: int) -> bytes:
    """Encodes a `u64` output."""
    return bytes(Writer().u64(value).out)


def raw_output(value) -> bytes:
    """Encodes `(ext, data)`: `sandpool run` writes `data` to `{id}.{ext}` as is.

    `ext` is 1 to 16 ASCII letters, digits, `-` or `_`, not `json` or `files`.
    """
    ext, data = value
    return b"\xff\x01" + bytes(Writer().str(ext).bytes(bytes(data)).out)


def files_output(files) -> bytes:
    """Encodes `{name: data}`: `sandpool run` writes the folder `{id}.files/` whole.

    Each name is one path component (no `/`), not starting with `.`.
    """
    w = Writer().u64(len(files))
    for name, data in files.items():
        w.str(name).bytes(bytes(data))
    return b"\xff\x02" + bytes(w.out)


def call(name: str, request: bytes) -> bytes:
    """Calls host capability `name` on `request` (encoded) and returns the encoded response.

    Any failure (not declared, not granted, a cap, the handler's error)
    fails the task on the host's side; this returns only a response.
    """
    if _capabilities is None:
        raise RuntimeError("host capabilities exist only inside a sandpool component")
    return _capabilities.call(name, bytes(request))


def task(decode: Callable[[bytes], Any], encode: Callable[[Any], bytes], warm: Iterable[bytes] = ()):
    """Makes `fn(input) -> output` a task; `fn.world` is the class componentize-py exports.

    componentize-py runs the module's top level once, at build time, and
    stores the interpreter's memory in the component: every task starts from
    that snapshot. What is done here is therefore not paid per task:
    `warm` inputs (encoded, as the host sends them) are run through the
    task once, so the modules it imports lazily are loaded and CPython's
    adaptive interpreter has specialised its bytecode and filled its caches;
    then every object so far is moved out of the garbage collector's reach
    (`gc.freeze()`), so a collection during a task never walks (and writes
    to) the snapshot's pages.
    """

    def wrap(fn):
        def run(_self, input: bytes) -> bytes:
            from componentize_py_types import Err
            try:
                value = decode(input)
            except InputError as e:
                raise Err(f"cannot decode the input: {e}")
            except Exception as e:  # a bug in a decoder is still a clear message
                raise Err(f"cannot decode the input: {e!r}")
            try:
                return encode(fn(value))
            except Exception:
                raise Err(traceback.format_exc(limit=8).rstrip())

        fn.world = type("WitWorld", (), {"run": run})
        for sample in warm:
            for _ in range(3):  # CPython specialises an instruction after a few runs
                try:
                    run(None, sample)
                except Exception:  # componentize_py_types.Err: the sample's own failure
                    pass
        gc.collect()
        gc.freeze()
        return fn

    return wrap
