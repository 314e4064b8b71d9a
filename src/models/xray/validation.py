"""Validation of a labelled image set: which files are usable scans, and whether the set can train a model.

Pure (bytes in, report out): the preparation task reads the files from the data lake and writes the
report next to the run's partition. A file is dropped, with its reason counted, when its class folder
is not a class, it does not decode as an accepted scan (images.decode_image: corrupt, not PNG/JPEG,
colour, side out of bounds, too many bytes), or its content repeats an earlier file (duplicates by
sha256: the first path in sorted order stays; the same content under two classes drops every copy,
since one of the labels is wrong). The set fails when too large a share of files is unusable, or a
class has too few images or too small a share.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from models.xray.images import ImageError, decode_image
from models.xray.schema import CLASSES

# The reason a file is dropped, from the start of decode_image's message.
_REASONS = (
    ("corrupt image", "corrupt"),
    ("empty image", "corrupt"),
    ("not an image", "not_an_image"),
    ("image format", "not_an_image"),
    ("image mode", "wrong_mode"),
    ("image is", "size_out_of_bounds"),  # "image is WxH px" and "image is N bytes"
)
EXAMPLES_PER_REASON = 5


@dataclass(frozen=True)
class ValidationConfig:
    """How much bad input a set may hold (the xray_* settings)."""

    max_bad_fraction: float = 0.05
    min_images_per_class: int = 10
    min_class_share: float = 0.1
    allow_colour: bool = False  # a real set storing gray scans as RGB: convert instead of dropping

    def __post_init__(self) -> None:
        if not 0 <= self.max_bad_fraction < 1:
            raise ValueError(f"xray_max_bad_fraction must be within [0, 1), not {self.max_bad_fraction}")
        if not 0 <= self.min_class_share <= 0.5:
            raise ValueError(f"xray_min_class_share must be within [0, 0.5], not {self.min_class_share}")


@dataclass(frozen=True)
class Accepted:
    """A usable scan: where it was, its class and content hash, and its pixels."""

    path: str
    label: str
    sha256: str
    gray: np.ndarray


@dataclass
class ImageValidationReport:
    source: str
    total_files: int = 0
    accepted: int = 0
    per_class: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)
    duplicates: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def bad_files(self) -> int:
        """Unusable files (duplicates are usable content, seen twice, and do not count)."""
        return sum(n for reason, n in self.dropped.items() if reason != "duplicate")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok, "bad_files": self.bad_files}

    def to_text(self) -> str:
        lines = [
            f"Validation of {self.source}: {'OK' if self.ok else 'FAILED'}",
            f"  files: {self.total_files}, accepted: {self.accepted}, unusable: {self.bad_files}, "
            f"duplicates dropped: {self.duplicates}",
            "  per class: " + ", ".join(f"{c} {n}" for c, n in self.per_class.items()),
        ]
        for reason, count in sorted(self.dropped.items()):
            lines.append(f"  dropped {reason}: {count} (e.g. {'; '.join(self.examples.get(reason, []))})")
        lines += [f"  ERROR: {e}" for e in self.errors]
        return "\n".join(lines)


class ImageValidationError(ValueError):
    """The image set cannot be prepared; the message is the report's errors, the report is attached."""

    def __init__(self, report: ImageValidationReport):
        super().__init__(f"{report.source}: " + "; ".join(report.errors))
        self.report = report


def label_of(path: str) -> str:
    """The class of a raw file: the name of the folder it is in (raw/xray/YYYY/MM/DD/<class>/<file>)."""
    parts = path.split("/")
    return parts[-2] if len(parts) >= 2 else ""


def reason_of(error: ImageError) -> str:
    text = str(error)
    return next((reason for start, reason in _REASONS if text.startswith(start)), "undecodable")


def validate_images(
    files: Iterable[tuple[str, bytes]], source: str, config: ValidationConfig | None = None
) -> tuple[ImageValidationReport, list[Accepted]]:
    """Check every (path, bytes); returns the report and the accepted scans (sorted by path)."""
    config = config or ValidationConfig()
    report = ImageValidationReport(source)
    dropped: Counter[str] = Counter()

    def drop(reason: str, path: str, why: str) -> None:
        dropped[reason] += 1
        examples = report.examples.setdefault(reason, [])
        if len(examples) < EXAMPLES_PER_REASON:
            examples.append(f"{path}: {why}")

    decoded: list[Accepted] = []
    for path, data in sorted(files, key=lambda item: item[0]):
        report.total_files += 1
        label = label_of(path)
        if label not in CLASSES:
            drop("unknown_class", path, f"folder {label!r} is not one of {list(CLASSES)}")
            continue
        try:
            gray = decode_image(data, allow_colour=config.allow_colour)
        except ImageError as exc:
            drop(reason_of(exc), path, str(exc))
            continue
        decoded.append(Accepted(path, label, hashlib.sha256(data).hexdigest(), gray))

    labels_of: dict[str, set[str]] = {}
    for scan in decoded:
        labels_of.setdefault(scan.sha256, set()).add(scan.label)
    accepted, seen = [], set()
    for scan in decoded:
        if len(labels_of[scan.sha256]) > 1:
            drop("conflicting_labels", scan.path, f"the same content is in {sorted(labels_of[scan.sha256])}")
        elif scan.sha256 in seen:
            drop("duplicate", scan.path, f"same content (sha256 {scan.sha256[:12]}) as an earlier file")
        else:
            seen.add(scan.sha256)
            accepted.append(scan)

    report.dropped = dict(sorted(dropped.items()))
    report.duplicates = dropped["duplicate"]
    report.accepted = len(accepted)
    report.per_class = {c: sum(1 for s in accepted if s.label == c) for c in CLASSES}
    report.errors = _set_errors(report, config)
    return report, accepted


def _set_errors(report: ImageValidationReport, config: ValidationConfig) -> list[str]:
    errors = []
    if report.total_files == 0:
        return [f"no image files ({', '.join(CLASSES)} folders of PNG/JPEG) found"]
    share = report.bad_files / report.total_files
    if share > config.max_bad_fraction:
        reasons = ", ".join(f"{n} {r}" for r, n in report.dropped.items() if r != "duplicate")
        errors.append(
            f"{report.bad_files} of {report.total_files} files ({share:.1%}) are unusable ({reasons}); "
            f"at most {config.max_bad_fraction:.1%} may be (xray_max_bad_fraction)"
        )
    for name, count in report.per_class.items():
        if count < config.min_images_per_class:
            errors.append(f"class {name!r} has {count} usable images; at least {config.min_images_per_class} needed")
    if report.accepted and min(report.per_class.values()) / report.accepted < config.min_class_share:
        smallest = min(report.per_class, key=report.per_class.get)
        errors.append(
            f"class {smallest!r} is {report.per_class[smallest] / report.accepted:.1%} of the usable images; "
            f"at least {config.min_class_share:.0%} needed (xray_min_class_share)"
        )
    return errors
