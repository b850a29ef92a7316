"""Where bytes live: a local folder or a prefix in an object store, decided once from a URL.

`open_storage("dataset")` or `open_storage("s3://bucket/birds/dataset")` is the one edge that
decides; everything after it speaks the small vocabulary of `Storage`: write a file whole, put a
finished local file in place, read bytes, a local copy for the decoder, list sizes, remove. A
plain path or a `file://` URL is a `LocalStorage` (pathlib, today's code: temporary file, fsync,
rename); any other scheme is an `ObjectStorage` over fsspec (`fsspec.core.url_to_fs`), where every
file is one PUT, so it appears whole or not at all. fsspec and its backends (s3fs, gcsfs) come with
the `[cluster]` and `[gcs]` extras and are imported only for a URL that needs them.

Credentials never pass through birdgrab: the storage library finds them itself (AWS_* variables,
profiles, instance roles, `AWS_ENDPOINT_URL` for MinIO or Ceph, Google's application credentials).
`BIRDGRAB_STORAGE_OPTIONS` adds fsspec options as a JSON object and may not hold a secret, because
a `Storage` travels to the workers by reference (its URL and those options) inside task payloads.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from birdgrab.errors import BirdgrabError, UsageError
from birdgrab.files import StagedFiles, atomic_write_bytes, atomic_writer, remove_stale_temps
from birdgrab.settings import redact, register_secret

STORAGE_OPTIONS_VARIABLE = "BIRDGRAB_STORAGE_OPTIONS"
# What to install for a scheme whose library is missing.
EXTRAS = {"s3": "cluster", "s3a": "cluster", "gs": "gcs", "gcs": "gcs"}
# Option names that would carry a secret into task payloads: they belong in the library's own chain.
_SECRET_OPTION = re.compile(r"(?i)secret|password|passwd|session_token|access_key|private_key|^key$|^token$")
# The storage libraries' own secret variables: registered with `redact`, in case a library says one.
_SECRET_VARIABLES = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")


class StorageError(BirdgrabError, OSError):
    """An object store failed an operation after its library's own retries (a run stops: exit 1).

    An `OSError` too, so the code that records a failed item for a full disk records this one."""


class Storage:
    """A folder of files, on a disk or in an object store, addressed by '/'-separated relative names.

    >>> dataset = open_storage("s3://birds/dataset")            # doctest: +SKIP
    >>> dataset.write_bytes("metadata.csv", b"file_name,label\\n")  # doctest: +SKIP
    >>> dataset.sizes()["metadata.csv"]                          # doctest: +SKIP
    16
    """

    url: str  # as the user named it: for messages and manifests (never holds a secret)
    is_local: bool

    def __str__(self) -> str:
        return self.url

    def local_path(self) -> Path | None:
        """The folder on this machine's disk, or None for an object store."""
        raise NotImplementedError

    def state_folder(self) -> Path:
        """A local folder for this storage's bookkeeping on this machine (its lock, staged transfers)."""
        raise NotImplementedError

    def check(self) -> None:
        """Raise a `UsageError` (exit 2) if this storage cannot be used (no bucket, no credentials)."""
        raise NotImplementedError

    def write_bytes(self, name: str, data: bytes) -> None:
        """Write a whole file: it appears complete or not at all."""
        raise NotImplementedError

    def put_file(self, local: Path, name: str) -> None:
        """Move the finished local file `local` into place as `name`, whole (the local file is consumed)."""
        raise NotImplementedError

    def read_bytes(self, name: str) -> bytes:
        """The file's bytes; FileNotFoundError if there is none."""
        raise NotImplementedError

    def read_many(self, names: list[str]) -> dict[str, bytes | Exception]:
        """Several files' bytes at once (an object store fetches them concurrently); a file that
        cannot be read maps to its exception."""
        found: dict[str, bytes | Exception] = {}
        for name in names:
            try:
                found[name] = self.read_bytes(name)
            except (OSError, ValueError) as exc:
                found[name] = exc
        return found

    def local_copy(self, name: str) -> contextlib.AbstractContextManager[Path]:
        """A path on this machine to read `name` from (the file itself on a disk, else a temporary download)."""
        raise NotImplementedError

    def writing_together(self) -> contextlib.AbstractContextManager[Callable[[str, bytes], None]]:
        """A `write(name, data)` for files written whole that stand together: when the block ends
        every one is in place, and when it raises none is (a disk: staged beside their places, then
        fsynced at once and renamed together; an object store: one PUT a file as it is written,
        those already up removed on an error).

        >>> with dataset.writing_together() as write:  # doctest: +SKIP
        ...     write("Parus_major/xc-1_0000.wav", first)
        ...     write("Parus_major/xc-1_0001.wav", second)
        """
        raise NotImplementedError

    def staging(self) -> contextlib.AbstractContextManager[Path]:
        """A local folder standing for this storage: what is written under it during the block is in
        the storage after it (the folder itself on a disk; uploaded, one PUT a file, from an object
        store's staging folder, which is removed either way)."""
        raise NotImplementedError

    def sizes(self, prefix: str = "") -> Mapping[str, int]:
        """Relative name -> size of the files under `prefix`, as they are now (an object store lists
        each top folder once, on first use: one listing, never a request a file)."""
        raise NotImplementedError

    def size(self, name: str) -> int | None:
        """The size of one file, None if there is none."""
        raise NotImplementedError

    def remove_many(self, names: Iterable[str]) -> None:
        """Remove these files; those already gone are fine."""
        raise NotImplementedError

    def remove(self, name: str) -> None:
        self.remove_many([name])

    def exists(self, name: str) -> bool:
        return self.size(name) is not None

    def make_folder(self, name: str) -> None:
        """Make a (possibly empty) folder; object stores have no folders, so it is a no-op there."""

    def clear_stale_temps(self) -> int:
        """Remove temporary files a killed run left (a disk's; an object store never shows any)."""
        return 0

    def free_mb(self) -> float:
        """Space left where this storage's bytes are first written on this machine."""
        raise NotImplementedError


class LocalStorage(Storage):
    """A folder on this machine's disk: today's code path, exactly (atomic rename, stat per file)."""

    is_local = True

    def __init__(self, root: Path | str):
        self.root = Path(root)
        self.url = str(root)

    def __reduce__(self) -> tuple[Any, ...]:
        return LocalStorage, (self.root,)

    def __repr__(self) -> str:
        return f"LocalStorage({str(self.root)!r})"

    def path(self, name: str) -> Path:
        """The file `name` under the root, refusing names that would leave it."""
        return self.root.joinpath(*_parts(name)) if name else self.root

    def local_path(self) -> Path:
        return self.root

    def state_folder(self) -> Path:
        return self.root

    def check(self) -> None:
        if self.root.exists() and not self.root.is_dir():
            raise UsageError(f"{self.root} is a file, not a folder")

    def write_bytes(self, name: str, data: bytes) -> None:
        atomic_write_bytes(self.path(name), data)

    def put_file(self, local: Path, name: str) -> None:
        target = self.path(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(local, target)  # the same disk: one rename, as birdgrab always did
        except OSError:  # another disk: a copy beside the target, then the rename
            with atomic_writer(target) as handle, open(local, "rb") as source:
                shutil.copyfileobj(source, handle, 1 << 20)
            Path(local).unlink(missing_ok=True)

    def read_bytes(self, name: str) -> bytes:
        return self.path(name).read_bytes()

    @contextlib.contextmanager
    def local_copy(self, name: str) -> Iterator[Path]:
        yield self.path(name)

    @contextlib.contextmanager
    def writing_together(self) -> Iterator[Callable[[str, bytes], None]]:
        with StagedFiles() as staged:

            def write(name: str, data: bytes) -> None:
                path = self.path(name)
                path.parent.mkdir(parents=True, exist_ok=True)
                staged.stage(path, data)

            yield write
            staged.commit()

    @contextlib.contextmanager
    def staging(self) -> Iterator[Path]:
        self.root.mkdir(parents=True, exist_ok=True)
        yield self.root

    def sizes(self, prefix: str = "") -> Mapping[str, int]:
        return _LocalSizes(self, prefix)

    def size(self, name: str) -> int | None:
        try:
            return self.path(name).stat().st_size
        except (OSError, ValueError):
            return None

    def remove_many(self, names: Iterable[str]) -> None:
        for name in names:
            with contextlib.suppress(FileNotFoundError):
                self.path(name).unlink()

    def make_folder(self, name: str) -> None:
        self.path(name).mkdir(parents=True, exist_ok=True)

    def clear_stale_temps(self) -> int:
        return remove_stale_temps(self.root)

    def free_mb(self) -> float:
        folder = self.root
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        return shutil.disk_usage(folder).free / 2**20


class _LocalSizes(Mapping[str, int]):
    """A disk's sizes, one stat a look-up (as birdgrab always did); iteration walks the folder."""

    def __init__(self, storage: LocalStorage, prefix: str):
        self.storage, self.prefix = storage, prefix.strip("/")

    def _name(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def __getitem__(self, name: str) -> int:
        try:
            status = self.storage.path(self._name(name)).stat()
        except (OSError, ValueError):
            raise KeyError(name) from None
        if not stat.S_ISREG(status.st_mode):
            raise KeyError(name)
        return status.st_size

    def __iter__(self) -> Iterator[str]:
        base = self.storage.path(self.prefix)
        for folder, _dirs, files in os.walk(base):
            for file in files:
                yield Path(folder, file).relative_to(base).as_posix()

    def __len__(self) -> int:
        return sum(1 for _ in self)


class ObjectStorage(Storage):
    """A prefix in an object store, through fsspec: every file one PUT, listings instead of HEADs."""

    is_local = False

    def __init__(self, url: str, options: Mapping[str, Any]):
        self.url = url.rstrip("/")
        self.options = dict(options)
        self.protocol = urlsplit(url).scheme
        self.fs, root = _filesystem(self.url, self.options)
        self.root = root.rstrip("/")

    def __reduce__(self) -> tuple[Any, ...]:
        # Workers reopen it from its URL and options (no secret among them: `storage_options` refuses any).
        return _reopen, (self.url, json.dumps(self.options, sort_keys=True))

    def __repr__(self) -> str:
        return f"ObjectStorage({self.url!r})"

    def _key(self, name: str) -> str:
        return "/".join([self.root, *_parts(name)])

    @contextlib.contextmanager
    def _calling(self, what: str) -> Iterator[None]:
        """The store's failures as one-line `StorageError`s (a missing file stays FileNotFoundError)."""
        try:
            yield
        except FileNotFoundError:
            raise
        except Exception as exc:
            raise StorageError(redact(f"{self.url}: {what} failed ({_describe(exc)})")) from None

    def local_path(self) -> None:
        return None

    def state_folder(self) -> Path:
        digest = hashlib.sha1(self.url.encode()).hexdigest()[:16]
        folder = _local_state_root() / f"{self.protocol}-{digest}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "url.txt").write_text(self.url + "\n", encoding="utf-8")  # for a person looking
        return folder

    def check(self) -> None:
        bucket = self.root.split("/", 1)[0]
        try:
            self.fs.ls(bucket, refresh=True)
        except FileNotFoundError:
            raise UsageError(
                f"{self.url}: the bucket {bucket!r} does not exist (or is not visible)"
            ) from None
        except PermissionError as exc:
            raise UsageError(redact(f"{self.url}: access denied ({_describe(exc)})")) from None
        except Exception as exc:
            raise UsageError(redact(f"{self.url}: cannot be used ({_describe(exc)})")) from None

    def write_bytes(self, name: str, data: bytes) -> None:
        with self._calling(f"writing {name}"):
            self.fs.pipe_file(self._key(name), data)

    def put_file(self, local: Path, name: str) -> None:
        with self._calling(f"uploading {name}"):
            self.fs.put_file(str(local), self._key(name))
        Path(local).unlink(missing_ok=True)

    def read_bytes(self, name: str) -> bytes:
        with self._calling(f"reading {name}"):
            return self.fs.cat_file(self._key(name))

    def read_many(self, names: list[str]) -> dict[str, bytes | Exception]:
        found: dict[str, bytes | Exception] = {}
        keys = {}
        for name in names:
            try:
                keys[self._key(name)] = name
            except ValueError as exc:
                found[name] = exc
        if keys:
            with self._calling("reading files"):
                fetched = self.fs.cat(list(keys), on_error="return")
            for key, data in fetched.items():
                found[keys[key]] = data if isinstance(data, bytes) else _as_error(data)
        return found

    @contextlib.contextmanager
    def local_copy(self, name: str) -> Iterator[Path]:
        folder = Path(tempfile.mkdtemp(prefix="birdgrab-"))
        try:
            local = folder / name.rsplit("/", 1)[-1]
            with self._calling(f"downloading {name}"):
                self.fs.get_file(self._key(name), str(local))
            yield local
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    @contextlib.contextmanager
    def writing_together(self) -> Iterator[Callable[[str, bytes], None]]:
        written: list[str] = []

        def write(name: str, data: bytes) -> None:
            self.write_bytes(name, data)
            written.append(name)

        try:
            yield write
        except BaseException:
            with contextlib.suppress(Exception):  # what did arrive must not stand as a half result
                self.remove_many(written)
            raise

    @contextlib.contextmanager
    def staging(self) -> Iterator[Path]:
        folder = Path(tempfile.mkdtemp(prefix="birdgrab-staging-"))
        try:
            yield folder
            uploaded: list[str] = []
            try:
                for path in sorted(p for p in folder.rglob("*") if p.is_file()):
                    name = path.relative_to(folder).as_posix()
                    self.put_file(path, name)
                    uploaded.append(name)
            except BaseException:
                with contextlib.suppress(Exception):  # what did arrive must not stand as a half result
                    self.remove_many(uploaded)
                raise
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def sizes(self, prefix: str = "") -> Mapping[str, int]:
        return _ObjectSizes(self, prefix.strip("/"))

    def list_sizes(self, prefix: str) -> dict[str, int]:
        """One listing (paginated by the store) of everything under `prefix`: name -> size."""
        base = self._key(prefix) if prefix else self.root
        with self._calling(f"listing {prefix or '/'}"):
            self.fs.invalidate_cache(base)  # workers wrote since: s3fs would answer from its cache
            try:
                found = self.fs.find(base, detail=True)
            except FileNotFoundError:
                return {}
        start = len(self.root) + 1
        return {
            path[start:]: int(info.get("size") or 0)
            for path, info in found.items()
            if info.get("type") != "directory"
        }

    def size(self, name: str) -> int | None:
        key = self._key(name)
        with self._calling(f"looking up {name}"):
            self.fs.invalidate_cache(key)
            try:
                info = self.fs.info(key)
            except FileNotFoundError:
                return None
        return None if info.get("type") == "directory" else int(info.get("size") or 0)

    def remove_many(self, names: Iterable[str]) -> None:
        keys = [self._key(name) for name in names]
        for start in range(0, len(keys), 1000):  # one batch delete a thousand (S3's limit)
            with self._calling("removing files"), contextlib.suppress(FileNotFoundError):
                self.fs.rm(keys[start : start + 1000])

    def free_mb(self) -> float:
        return shutil.disk_usage(tempfile.gettempdir()).free / 2**20


class _ObjectSizes(Mapping[str, int]):
    """An object store's sizes under a prefix, listed one top folder at a time on first use:
    a cache of a million files costs a thousand listing requests, not a million HEADs."""

    def __init__(self, storage: ObjectStorage, prefix: str):
        self.storage, self.prefix = storage, prefix
        self._folders: dict[str, dict[str, int]] = {}

    def _folder(self, top: str) -> dict[str, int]:
        if top not in self._folders:
            where = "/".join(p for p in (self.prefix, top) if p)
            listed = self.storage.list_sizes(where)
            cut = len(self.prefix) + 1 if self.prefix else 0
            self._folders[top] = {name[cut:]: size for name, size in listed.items()}
        return self._folders[top]

    def __getitem__(self, name: str) -> int:
        top = name.split("/", 1)[0] if "/" in name else ""
        return self._folder(top)[name]

    def _all(self) -> dict[str, int]:
        return self._folder("")

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())


def _parts(name: str) -> list[str]:
    """A relative '/'-separated name's parts, refusing any that would leave the storage's root."""
    parts = name.split("/")
    if any(part in ("", ".", "..") or "\\" in part or "\x00" in part for part in parts):
        raise ValueError(f"unsafe file name {name[:60]!r}")
    return parts


def _as_error(exc: BaseException) -> Exception:
    """A store's failure for one file, as the OSError a disk would give."""
    if isinstance(exc, FileNotFoundError):
        return exc
    return StorageError(redact(_describe(exc)))


def _describe(exc: BaseException) -> str:
    """A store's exception in a few words (botocore's messages name no secret, but `redact` runs after)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    name = type(exc).__name__
    return f"{name}: {text}" if text and name not in text else text or name


def _local_state_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "birdgrab" / "remote"


def storage_options(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The fsspec options of `BIRDGRAB_STORAGE_OPTIONS` (a JSON object), refusing any that is a secret."""
    raw = (os.environ if env is None else env).get(STORAGE_OPTIONS_VARIABLE, "").strip()
    if not raw:
        return {}
    try:
        options = json.loads(raw)
    except ValueError as exc:
        raise UsageError(f"{STORAGE_OPTIONS_VARIABLE} is not valid JSON ({exc})") from None
    if not isinstance(options, dict):
        raise UsageError(f'{STORAGE_OPTIONS_VARIABLE} must be a JSON object, like {{"anon": true}}')
    _refuse_secrets(options)
    return options


def _refuse_secrets(options: Mapping[str, Any], where: str = "") -> None:
    for name, value in options.items():
        if _SECRET_OPTION.search(str(name)):
            raise UsageError(
                f"{STORAGE_OPTIONS_VARIABLE} must not hold credentials ({where}{name}): they travel to "
                "every worker; use the storage library's own chain (AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, a profile, an instance role, GOOGLE_APPLICATION_CREDENTIALS)"
            )
        if isinstance(value, Mapping):
            _refuse_secrets(value, f"{where}{name}.")


def is_url(location: str | os.PathLike[str]) -> bool:
    """Whether `location` names a place by URL (scheme://...) rather than a plain path."""
    return isinstance(location, str) and re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", location) is not None


def open_storage(location: str | os.PathLike[str] | Storage) -> Storage:
    """The storage a path or URL names: plain paths and file:// on the local code path, other schemes
    through fsspec. Bad input (an unknown scheme, a missing extra, secrets in options) is a `UsageError`.

    >>> open_storage("dataset")                     # doctest: +SKIP
    LocalStorage('dataset')
    >>> open_storage("s3://birds/cache")            # doctest: +SKIP
    ObjectStorage('s3://birds/cache')
    """
    if isinstance(location, Storage):
        return location
    if not is_url(location):
        return LocalStorage(Path(location))
    url = str(location)
    parts = urlsplit(url)
    if parts.scheme.lower() in ("file", "local"):
        return LocalStorage(Path(parts.netloc + parts.path) if parts.netloc else Path(parts.path))
    if "@" in parts.netloc:
        raise UsageError(
            "a storage URL must not carry credentials; the storage library's own chain finds them"
        )
    if not parts.netloc:
        raise UsageError(f"{url}: name a bucket, like {parts.scheme}://bucket/prefix")
    return ObjectStorage(url, storage_options())


@functools.lru_cache(maxsize=32)
def _reopen(url: str, options_json: str) -> ObjectStorage:
    """One `ObjectStorage` per URL and options in each worker process (workers unpickle by this)."""
    return ObjectStorage(url, json.loads(options_json))


# One filesystem per scheme, options and credential environment, kept for the life of the process.
# fsspec's own instance cache ignores the environment (changed AWS_* variables would reuse the old
# credentials), and a filesystem dropped mid-run has s3fs's finalizer close its session on whatever
# event loop the collecting thread runs, which asyncio reports as a traceback ("attached to a
# different loop").
_FILESYSTEMS: dict[tuple[str, str, tuple[tuple[str, str], ...]], Any] = {}
_FILESYSTEMS_LOCK = threading.Lock()
_CREDENTIAL_PREFIXES = ("AWS_", "BOTO_", "GOOGLE_", "GCSFS_", "CLOUDSDK_")


def _filesystem(url: str, options: Mapping[str, Any]) -> tuple[Any, str]:
    """fsspec's filesystem and the path inside it for `url`; a `UsageError` for what cannot work."""
    scheme = urlsplit(url).scheme.lower()
    extra = EXTRAS.get(scheme, "cluster")
    try:
        import fsspec.core
        from fsspec.registry import known_implementations, registry
    except ImportError:
        raise UsageError(
            f"{scheme}:// storage needs the {extra} extra: pip install 'birdgrab[{extra}]'"
        ) from None
    if scheme not in known_implementations and scheme not in registry:
        raise UsageError(f"{url}: unknown storage scheme {scheme!r} (use a path, file://, s3:// or gs://)")
    for variable in _SECRET_VARIABLES:
        register_secret(os.environ.get(variable, ""))
    credentials = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith(_CREDENTIAL_PREFIXES)))
    key = (scheme, json.dumps(options, sort_keys=True, default=str), credentials)
    with _FILESYSTEMS_LOCK:
        fs = _FILESYSTEMS.get(key)
        if fs is not None:
            return fs, fs._strip_protocol(url)
        try:
            fs, path = fsspec.core.url_to_fs(url, **options, skip_instance_cache=True)
        except ImportError:
            raise UsageError(
                f"{scheme}:// storage needs the {extra} extra: pip install 'birdgrab[{extra}]'"
            ) from None
        except (TypeError, ValueError) as exc:
            raise UsageError(redact(f"{url}: bad storage options ({_describe(exc)})")) from None
        _FILESYSTEMS[key] = fs
        return fs, path


def check_storages(*locations: str | os.PathLike[str] | Storage | None) -> list[Storage]:
    """Open and check each location (None skipped): the command's edge, before anything is written."""
    opened = [open_storage(location) for location in locations if location is not None]
    for storage in opened:
        storage.check()
    return opened
