"""Files uploaded through dashboard forms, handed to importers as paths."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fastapi import UploadFile

from intently.web.session import PageError

COPY_CHUNK = 1 << 20
_UNSAFE = re.compile(r"[^A-Za-z0-9._() -]+")


def file_name(upload: UploadFile) -> str:
    """The uploaded file's own name (it labels the run), without any directory part."""
    name = (upload.filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = _UNSAFE.sub("_", name).strip(" .")[:120]
    return name or "upload.csv"


@contextmanager
def saved_upload(upload: UploadFile | None) -> Iterator[Path]:
    """The upload copied, in chunks, to a temporary file of its own name (importers read a
    path); removed afterwards. The multipart parser already spooled it to disk past 1 MB,
    so neither copy is held in memory."""
    if upload is None or not upload.filename:
        raise PageError(400, "file: choose a file to upload")
    folder = tempfile.mkdtemp(prefix="intently-upload-")
    try:
        path = Path(folder) / file_name(upload)
        with open(path, "wb") as out:
            shutil.copyfileobj(upload.file, out, COPY_CHUNK)
        if os.path.getsize(path) == 0:
            raise PageError(400, f"file: '{upload.filename}' is empty")
        yield path
    finally:
        upload.file.close()
        shutil.rmtree(folder, ignore_errors=True)
