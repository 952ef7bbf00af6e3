"""Reading rosbag2 recordings without ROS, tolerant of the damage real recordings carry.

Opens rosbag2 directories (sqlite3 or MCAP storage) and bare ``.mcap`` files with rosbags'
``AnyReader``. A message that fails to deserialize is counted and skipped; a file that breaks
mid-way ends the iteration with the reason recorded; everything lands in ``ReadIssues`` (count and
the first examples) instead of a traceback. An MCAP file cut off before its footer (a recorder that
was killed) cannot be indexed by rosbags; it is read sequentially with the ``mcap`` package, which
recovers every complete chunk.

Messages are deserialized with the bag's own type definitions when it embeds them, else with the
default typestore (ROS 2 Jazzy + ``mickey_ros/msg/RelativePose``).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rosbags.highlevel import AnyReader, AnyReaderError
from rosbags.rosbag2 import ReaderError
from rosbags.serde import SerdeError
from rosbags.typesys import TypesysError, get_types_from_msg

MAX_EXAMPLES = 5
# The first bytes of each file kind AnyReader opens (MCAP spec, SQLite file format, ROS 1 bag).
MAGIC = {"MCAP": b"\x89MCAP", "sqlite3": b"SQLite format 3\x00", "ROS 1 bag": b"#ROSBAG V"}
SUFFIX_KIND = {".mcap": "MCAP", ".db3": "sqlite3", ".bag": "ROS 1 bag"}
KIND_NAME = {"MCAP": "an MCAP file", "sqlite3": "a sqlite3 database", "ROS 1 bag": "a ROS 1 bag"}


def _corruption_errors() -> tuple[type[BaseException], ...]:
    """What rosbags lets through from damaged files, besides its own ReaderError.

    Corrupt pages/chunks surface as the low-level error of whatever parsed them (apsw for sqlite,
    struct/int conversions, UTF-8 decoding, lz4 raises RuntimeError, zstd its own error), so they
    are listed one by one; the message always carries the type and text of the cause.
    """
    errors: list[type[BaseException]] = [
        AnyReaderError, ReaderError, SerdeError, OSError, EOFError, ValueError, OverflowError,
        struct.error, KeyError, IndexError, RuntimeError,
    ]
    try:
        import apsw

        errors.append(apsw.Error)
    except ImportError:  # rosbags without sqlite3 support
        pass
    try:
        from mcap.exceptions import McapError

        errors.append(McapError)
    except ImportError:
        pass
    for module in ("compression.zstd", "backports.zstd"):
        try:
            errors.append(__import__(module, fromlist=["ZstdError"]).ZstdError)
            break
        except (ImportError, AttributeError):
            continue
    return tuple(errors)


BAG_ERRORS = _corruption_errors()


class BagError(ValueError):
    """A recording cannot be used as asked: unreadable, or a topic missing / of the wrong type."""


@dataclass
class ReadIssues:
    """Problems met on the way: skipped items (count + first examples) and an early stop."""

    what: str = "message(s) could not be decoded and were skipped"
    count: int = 0
    examples: list[str] = field(default_factory=list)
    stopped: str | None = None  # why iteration ended before the end of the file

    def add(self, where: str, reason: str) -> None:
        """Count one skipped message; keep the first ``MAX_EXAMPLES`` explanations."""
        self.count += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(f"{where}: {reason}")

    def summary(self) -> str:
        """One paragraph for the user ('' when nothing went wrong)."""
        lines = []
        if self.count:
            lines.append(f"{self.count} {self.what}, e.g.:")
            lines += [f"  - {example}" for example in self.examples]
        if self.stopped:
            lines.append(f"reading stopped early: {self.stopped}")
        return "\n".join(lines)


@dataclass(frozen=True)
class BagTopic:
    """One topic of a recording."""

    name: str
    msgtype: str
    count: int


@dataclass(frozen=True)
class BagMessage:
    """One deserialized message; ``log_time_ns`` is the recorder's receive time."""

    topic: str
    msgtype: str
    log_time_ns: int
    msg: Any


def _error_text(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}" if str(err) else type(err).__name__


def _check_file_kind(path: Path) -> None:
    """Refuse a file that is no recording (a text file named ``.mcap``) before rosbags sees it.

    rosbags opens an unknown file as an empty bag; only the first bytes tell what it is.
    """
    with path.open("rb") as stream:
        head = stream.read(16)
    kind = next((k for k, magic in MAGIC.items() if head.startswith(magic)), None)
    expected = SUFFIX_KIND.get(path.suffix.lower())
    if kind is not None and kind == (expected or kind):
        return
    wanted = KIND_NAME.get(expected or "", "a rosbag2 recording")
    if not head:
        found = f"empty, not {wanted}"
    elif kind:
        found = f"{KIND_NAME[kind]}, not {wanted}"
    else:
        found = f"not {wanted} (it starts with {head[:8]!r})"
    raise BagError(f"{path} is {found}; pass a rosbag2 recording: a bag directory (with "
                   "metadata.yaml) or the .mcap file `ros2 bag record -s mcap` wrote")


def _check_metadata(path: Path) -> None:
    """Refuse a rosbag2 directory whose metadata.yaml does not parse, naming the fix."""
    import yaml

    metadata = path / "metadata.yaml"
    try:
        info = yaml.safe_load(metadata.read_text(encoding="utf-8"))
        problem = ("" if isinstance(info, dict) and "rosbag2_bagfile_information" in info
                   else "has no rosbag2_bagfile_information section")
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = f"is not valid YAML ({getattr(err, 'problem', None) or err}{where})"
    if problem:
        mcaps = sorted(p.name for p in path.glob("*.mcap"))
        also = f", or pass the file {path / mcaps[0]} itself" if len(mcaps) == 1 else ""
        raise BagError(
            f"{metadata} {problem}; rebuild it from the recorded files with `ros2 bag reindex "
            f"{path}` (add `-s mcap` for MCAP storage){also}"
        )


def _bag_path(path: Path) -> Path:
    """A directory without metadata.yaml but with one .mcap inside is read as that file.

    Raises:
        BagError: a file that is no recording, a broken metadata.yaml, or a directory without
            metadata.yaml and not exactly one .mcap file.
    """
    if path.is_file():
        _check_file_kind(path)
    elif (path / "metadata.yaml").is_file():
        _check_metadata(path)
    elif path.is_dir():
        files = sorted(path.glob("*.mcap"))
        if len(files) == 1:
            _check_file_kind(files[0])
            return files[0]
        raise BagError(
            f"{path} has no metadata.yaml; run `ros2 bag reindex {path}` or pass the .mcap file"
        )
    return path


def _mcap_file(path: Path) -> Path | None:
    if path.suffix == ".mcap":
        return path
    files = sorted(path.glob("*.mcap")) if path.is_dir() else []
    return files[0] if len(files) == 1 else None


class _McapStream:
    """Sequential read of an MCAP file without footer/index (needs the ``mcap`` package)."""

    def __init__(self, path: Path, typestore: Any) -> None:
        from mcap.stream_reader import StreamReader

        self.path, self.typestore, self._reader_cls = path, typestore, StreamReader
        self.schemas: dict[int, str] = {}
        self.channels: dict[int, tuple[str, str]] = {}  # id -> (topic, msgtype)
        self.stopped: str | None = None

    def records(self) -> Iterator[tuple[str, str, int, bytes]]:
        """(topic, msgtype, log_time_ns, raw CDR) in file order, up to the first damage."""
        from mcap.records import Channel, Message, Schema

        with self.path.open("rb") as stream:
            reader = self._reader_cls(stream, skip_magic=False)
            try:
                for record in reader.records:
                    if isinstance(record, Schema):
                        self._register(record)
                    elif isinstance(record, Channel):
                        msgtype = self.schemas.get(record.schema_id, "")
                        self.channels[record.id] = (record.topic, msgtype)
                    elif isinstance(record, Message) and record.channel_id in self.channels:
                        topic, msgtype = self.channels[record.channel_id]
                        yield topic, msgtype, record.log_time, record.data
            except BAG_ERRORS as err:
                self.stopped = f"{self.path.name} is truncated or corrupt ({_error_text(err)})"

    def _register(self, schema: Any) -> None:
        self.schemas[schema.id] = schema.name
        if schema.name not in self.typestore.types and schema.encoding == "ros2msg":
            try:
                self.typestore.register(get_types_from_msg(schema.data.decode(), schema.name))
            except (TypesysError, UnicodeDecodeError):
                pass  # its messages then fail to deserialize and are counted there


class BagReader:
    """A rosbag2 recording opened for reading (use as a context manager).

    Example::

        with BagReader(Path("run.mcap")) as bag:
            bag.require("/camera/image_raw", ("sensor_msgs/msg/Image",), "camera")
            for m in bag.messages(["/camera/image_raw"]):
                ...
            print(bag.issues.summary())

    Args:
        path: rosbag2 directory (sqlite3 or MCAP storage) or a bare ``.mcap`` file.
        typestore: used when the bag embeds no type definitions (sqlite3 bags of older ROS
            versions); default ROS 2 Jazzy + ``mickey_ros/msg/RelativePose``.
    """

    def __init__(self, path: Path, typestore: Any | None = None) -> None:
        self.path = Path(path)
        if typestore is None:
            from mickey_ros.bags.writer import make_typestore

            typestore = make_typestore()
        self.default_typestore = typestore
        self.issues = ReadIssues()
        self.recovered = False  # True when read sequentially after a failed indexed open
        self.start_time_ns = 0  # receive time of the first message
        self._reader: AnyReader | None = None
        self._stream: _McapStream | None = None
        self.topics: dict[str, BagTopic] = {}

    # ------------------------------------------------------------------ open / close
    def __enter__(self) -> BagReader:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        """Open the recording and list its topics.

        Raises:
            FileNotFoundError: the path does not exist.
            BagError: the recording cannot be read at all; the message says why and what to try.
        """
        if not self.path.exists():
            raise FileNotFoundError(f"bag {self.path} does not exist")
        path = _bag_path(self.path)
        try:
            reader = AnyReader([path], default_typestore=self.default_typestore)
            reader.open()
        except BAG_ERRORS as err:
            self._open_damaged(path, err)
            return
        self._reader = reader
        self.start_time_ns = reader.start_time if reader.message_count else 0
        for name, info in reader.topics.items():
            self.topics[name] = BagTopic(name, info.msgtype or "?", info.msgcount)

    def _open_damaged(self, path: Path, err: BaseException) -> None:
        mcap_file = _mcap_file(path)
        reason = _error_text(err)
        if mcap_file is None:
            sqlite = path.suffix == ".db3" or any(path.glob("*.db3"))
            hint = (". For a damaged sqlite3 bag try `sqlite3 FILE.db3 '.recover' | sqlite3 "
                    "fixed.db3`, then `ros2 bag reindex`" if sqlite else "")
            raise BagError(f"cannot read bag {self.path}: {reason}{hint}") from None
        try:
            self._stream = _McapStream(mcap_file, self.default_typestore)
        except ImportError:
            raise BagError(
                f"cannot index {mcap_file} ({reason}: probably cut off while recording); "
                "`pip install mcap` lets mickey-ros recover its complete chunks, or run "
                "`mcap recover` (MCAP CLI)"
            ) from None
        self.recovered = True
        counts: dict[str, list] = {}
        for topic, msgtype, log_time_ns, _ in self._stream.records():
            counts.setdefault(topic, [msgtype, 0])[1] += 1
            self.start_time_ns = min(self.start_time_ns or log_time_ns, log_time_ns)
        self.topics = {t: BagTopic(t, mt, n) for t, (mt, n) in counts.items()}
        self.issues.stopped = self._stream.stopped or f"{mcap_file.name}: {reason}"

    def close(self) -> None:
        """Release the file handles."""
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        self._stream = None

    # ------------------------------------------------------------------ topics
    def describe_topics(self) -> str:
        """'name (type, N msgs)' lines of every topic, for error messages and ``--list``."""
        if not self.topics:
            return "  (the bag has no topics)"
        return "\n".join(
            f"  {t.name} ({t.msgtype}, {t.count} msgs)" for t in sorted(self.topics.values(),
                                                                       key=lambda t: t.name)
        )

    def require(self, topic: str, msgtypes: tuple[str, ...], role: str) -> BagTopic:
        """The topic ``topic`` if present with one of ``msgtypes``.

        Raises:
            BagError: naming the missing topic (or its wrong type), the role it was wanted for,
                the topics that do have a suitable type and all topics with their types.
        """
        found = self.topics.get(topic)
        if found is not None and found.msgtype in msgtypes:
            return found
        suitable = sorted(t.name for t in self.topics.values() if t.msgtype in msgtypes)
        what = (f"has type {found.msgtype}, expected {' or '.join(msgtypes)}" if found
                else "is not in the bag")
        hint = f"; topics of a suitable type: {', '.join(suitable)}" if suitable else ""
        raise BagError(
            f"{role} topic {topic!r} {what}{hint}\nbag {self.path} has:\n{self.describe_topics()}"
        )

    # ------------------------------------------------------------------ messages
    def _raw(self, topics: set[str], issues: ReadIssues) -> Iterator[tuple[str, str, int, bytes]]:
        if self._stream is not None:
            for record in self._stream.records():
                if record[0] in topics:
                    yield record
            return
        if self._reader is None:
            raise RuntimeError("BagReader is not open; use it as a context manager")
        connections = [c for c in self._reader.connections if c.topic in topics]
        if not connections:
            return
        try:
            for connection, log_time_ns, raw in self._reader.messages(connections=connections):
                yield connection.topic, connection.msgtype, log_time_ns, raw
        except BAG_ERRORS as err:
            issues.stopped = f"the bag is truncated or corrupt ({_error_text(err)})"

    def _deserialize(self, raw: bytes, msgtype: str) -> Any:
        if self._reader is not None:
            return self._reader.deserialize(raw, msgtype)
        return self.default_typestore.deserialize_cdr(raw, msgtype)

    def messages(
        self, topics: list[str] | tuple[str, ...], report: bool = True
    ) -> Iterator[BagMessage]:
        """Messages of ``topics`` in receive-time order (file order for a recovered MCAP).

        Undecodable messages are skipped and counted in ``issues``; damage that ends the file
        early sets ``issues.stopped``. Neither raises. ``report=False`` skips silently (a
        look-ahead pass over messages that a later pass reads and reports).
        """
        issues = self.issues if report else ReadIssues()
        for topic, msgtype, log_time_ns, raw in self._raw(set(topics), issues):
            try:
                msg = self._deserialize(raw, msgtype)
            except (AnyReaderError, SerdeError, KeyError) as err:  # KeyError: unknown type
                issues.add(f"{topic} @ {log_time_ns / 1e9:.3f} s", _error_text(err))
                continue
            yield BagMessage(topic, msgtype, log_time_ns, msg)
