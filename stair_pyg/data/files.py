r"""Reading input files, one rule for every reader (MMRec, RecBole, CSV, ``prepare`` inputs).

Whatever is wrong with a file itself, rather than with its content, is one
:class:`~stair_pyg.data.errors.DataError` naming the file: missing, a directory, a broken symbolic
link or a link loop, unreadable, empty where content is needed, not in the expected encoding
(with the byte offset and line), or, for features, not a single ``.npy`` array.

Text files are UTF-8 unless an ``encoding`` is given; a UTF-8 byte-order mark is accepted (and
dropped) by every reader.
"""
from __future__ import annotations

import codecs
import errno
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple, Union

import numpy as np

from stair_pyg.data.errors import DataError

PathLike = Union[str, Path]
NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = b"PK\x03\x04"
_UTF8 = {"utf-8", "utf8", "utf-8-sig", "utf_8", "utf_8_sig"}


def _os_error(e: OSError, path: Path) -> DataError:
    if isinstance(e, IsADirectoryError):
        return DataError("is a directory, not a file", file=path)
    if isinstance(e, PermissionError):
        return DataError("cannot read the file: permission denied", file=path)
    if e.errno == errno.ELOOP:
        return DataError("symbolic link loop (too many levels of symbolic links)", file=path)
    if isinstance(e, FileNotFoundError):
        if path.is_symlink():
            return DataError("broken symbolic link (its target does not exist)", file=path)
        return DataError("no such file", file=path)
    return DataError(f"cannot read the file: {e.strerror or e}", file=path)


def check_file(path: PathLike) -> Path:
    r"""Raises unless :obj:`path` is a regular, readable file (after links); returns it."""
    path = Path(path)
    try:
        with open(path, "rb"):
            pass
    except OSError as e:
        raise _os_error(e, path) from None
    if path.is_dir():
        raise DataError("is a directory, not a file", file=path)
    return path


def read_bytes(path: PathLike) -> bytes:
    r"""The bytes of :obj:`path`, or a :class:`DataError` saying why the file cannot be read."""
    path = Path(path)
    try:
        return path.read_bytes()
    except OSError as e:
        raise _os_error(e, path) from None


def decode(data: bytes, path: PathLike, encoding: Optional[str] = None,
           option: Optional[str] = None) -> str:
    r"""Decodes the bytes of a text file.

    Args:
        data (bytes): The file's content.
        path (str or Path): The file, for messages.
        encoding (str, optional): The encoding; UTF-8 when :obj:`None`. With UTF-8 a leading
            byte-order mark is dropped.
        option (str, optional): Where the reader's ``encoding`` option is set, named in the
            message when the bytes do not decode (e.g. ``"dataset.encoding"``); :obj:`None` for
            readers without one.
    """
    enc = (encoding or "utf-8").strip()
    try:
        enc_name = codecs.lookup(enc).name
    except LookupError:
        raise DataError(f"unknown encoding {enc!r}", file=path) from None
    utf8 = enc_name in ("utf-8", "utf-8-sig") or enc.lower() in _UTF8

    def how(suggest: str) -> str:
        return f", or set encoding={suggest!r} ({option})" if option else ""
    if utf8:
        if data.startswith(codecs.BOM_UTF8):
            data = data[len(codecs.BOM_UTF8):]
        elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            raise DataError(f"the file is UTF-16 (it starts with a UTF-16 byte-order mark), not "
                            f"UTF-8: convert it to UTF-8{how('utf-16')}", file=path, line=1)
        enc_name = "utf-8"
    try:
        text = data.decode(enc_name)
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        bad = data[e.start:e.start + 4]
        hint = " (Latin-1/Windows-1252 text?)" if utf8 else ""
        raise DataError(f"not valid {enc_name} at byte {e.start} ({bad!r}){hint}: convert the "
                        f"file to {enc_name}{how('latin-1') if utf8 else ''}", file=path,
                        line=line) from None
    nul = text.find("\x00")
    if nul >= 0:
        line = text.count("\n", 0, nul) + 1
        raise DataError(f"contains a NUL character (binary data, or UTF-16 without a byte-order "
                        f"mark?); expected {enc_name} text{how('utf-16')}", file=path, line=line)
    if enc_name.startswith("utf-16") or enc_name.startswith("utf-32"):
        text = text.lstrip("\ufeff")
    return text


def read_text(path: PathLike, encoding: Optional[str] = None,
              option: Optional[str] = None) -> str:
    r""":func:`read_bytes` then :func:`decode`."""
    return decode(read_bytes(path), path, encoding, option)


def read_keyed_lines(path: PathLike, encoding: Optional[str], option: str, expected: str,
                     is_header: Callable[[str], bool],
                     empty_value: Optional[str] = None) -> Tuple[Dict[str, str], int]:
    r"""``({key: value}, repeated)`` from the ``key<TAB>value`` lines of :obj:`path` (read by
    :func:`read_text` in :obj:`encoding`, :obj:`option` naming the option that sets it). Blank
    lines are skipped, and a first line whose key :obj:`is_header` accepts; the value is what
    follows the first tab, as it is (it may hold tabs). A line without a tab or with an empty
    key, and with :obj:`empty_value` given one whose value is blank, raises :class:`DataError`
    naming the file and line (:obj:`expected` describes the line, :obj:`empty_value` what is
    missing). A repeated key keeps its first value and counts in :obj:`repeated`."""
    out: Dict[str, str] = {}
    repeated = 0
    for number, line in enumerate(read_text(path, encoding, option).split("\n"), start=1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        key, tab, value = line.partition("\t")
        key = key.strip()
        if number == 1 and is_header(key):
            continue
        if not tab or (empty_value is not None and not value.strip()):
            raise DataError(f"expected '{expected}'" + (" (no tab found)" if not tab
                            else f" ({empty_value})"), file=path, line=number)
        if not key:
            raise DataError("empty item id", file=path, line=number)
        if key in out:
            repeated += 1
            continue
        out[key] = value
    return out, repeated


def load_npy(path: PathLike) -> np.ndarray:
    r"""Loads one array from a ``.npy`` file; the file must be a non-empty ``.npy`` (not an
    ``.npz`` archive, not a pickle, not a directory)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(len(NPY_MAGIC))
    except OSError as e:
        raise _os_error(e, path) from None
    if not head:
        raise DataError("empty file (0 bytes), not a .npy array", file=path)
    if head.startswith(ZIP_MAGIC):
        raise DataError("an .npz archive (zip of arrays), not a .npy array: save one "
                        "[num_items, dim] matrix with numpy.save", file=path)
    if head != NPY_MAGIC:
        raise DataError("not a .npy file (it does not start with the NumPy magic "
                        "b'\\x93NUMPY')", file=path)
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            header = {(1, 0): np.lib.format.read_array_header_1_0,
                      (2, 0): np.lib.format.read_array_header_2_0}.get(version)
            shape, _, dtype = header(f) if header else ((), False, None)
            offset = f.tell()
        size = path.stat().st_size
    except (ValueError, EOFError, OSError) as e:
        raise DataError(f"not a readable .npy array ({e})", file=path) from None
    if dtype is not None and not dtype.hasobject:
        expected = int(np.prod(shape, dtype=object)) * dtype.itemsize
        if expected != size - offset:
            # Checked before numpy allocates what the header claims.
            raise DataError(f"the .npy header says shape {tuple(shape)} of {dtype} "
                            f"({expected:,} bytes), but the file holds {size - offset:,} bytes "
                            f"of data (truncated or corrupt)", file=path)
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, EOFError, OSError) as e:
        raise DataError(f"not a readable .npy array ({e})", file=path) from None


__all__ = ["check_file", "read_bytes", "decode", "read_text", "load_npy"]
