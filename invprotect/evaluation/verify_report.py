"""What `invprotect.evaluation.verify.verify` measured, as typed fields.

`VerifyReport` holds the figures under readable names; `VerifyReport.to_dict` gives
the JSON of ``OUT/report.json`` (the paper's names: ``A_ori``, ``P_prt``, ...), with
the keys in the order every earlier report has them, and `VerifyReport.from_dict`
reads such a file back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Accuracies = dict[str, float]
"""Top-1 accuracy by model name."""


@dataclass(frozen=True)
class DefenceResult:
    """The figures of one defence.

    Attributes:
        images: Images the defence was applied to.
        protected: Accuracy of every model on the defended protected images.
        clean: Accuracy on the defended originals (the baseline to read it against).
        recovered_psnr: Mean PSNR (dB) of what the key recovers from the defended
            protected images.
    """

    images: int
    protected: Accuracies
    clean: Accuracies
    recovered_psnr: float

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of this defence in ``report.json``."""
        return {
            "images": self.images,
            "protected": self.protected,
            "clean": self.clean,
            "recovered_psnr": self.recovered_psnr,
        }


_NAMES = {
    "accuracy_original": "A_ori",
    "accuracy_protected": "A_prt",
    "accuracy_recovered": "A_rev",
    "psnr_protected": "P_prt",
    "ssim_protected": "S_prt",
    "psnr_recovered": "P_rev",
    "ssim_recovered": "S_rev",
    "exact_rate": "exact_rate",
}
"""Field name -> JSON key of the figures, in the JSON's order (after ``images``)."""


@dataclass(frozen=True)
class VerifyReport:
    """The figures and facts of one verification.

    Attributes:
        images: Files measured (those that came through protection and recovery).
        accuracy_original: ``A_ori``: accuracy of every model on the originals.
        accuracy_protected: ``A_prt``: on the protected files.
        accuracy_recovered: ``A_rev``: on the recovered files.
        psnr_protected: ``P_prt``: mean PSNR (dB, capped at 100) of protected vs original.
        ssim_protected: ``S_prt``: mean SSIM of protected vs original.
        psnr_recovered: ``P_rev``: mean PSNR of recovered vs original.
        ssim_recovered: ``S_rev``: mean SSIM of recovered vs original.
        exact_rate: Fraction of recovered files whose pixels equal the original's.
        defences: The figures of every defence, by spec (in the order measured).
        data: The data folder, resolved.
        targets: Names of the target models.
        unseen: Names of the models the protector never saw.
        classes: Class names of the data.
        files: Relative paths of the measured files, in measuring order.
        failed: ``[relative path, reason]`` of the files the pipeline refused.
        protector: Its SHA-256 (``sha256``), its description, and (from the command
            line) the ``spec`` it was named by.
        config: The `invprotect.evaluation.VerifyConfig` as a JSON object.
        wall_seconds: Time the verification took.
    """

    images: int
    accuracy_original: Accuracies
    accuracy_protected: Accuracies
    accuracy_recovered: Accuracies
    psnr_protected: float
    ssim_protected: float
    psnr_recovered: float
    ssim_recovered: float
    exact_rate: float
    defences: dict[str, DefenceResult] = field(default_factory=dict)
    data: str = ""
    targets: list[str] = field(default_factory=list)
    unseen: list[str] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    failed: list[list[str]] = field(default_factory=list)
    protector: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    wall_seconds: float = 0.0

    @property
    def models(self) -> list[str]:
        """Every measured model's name, targets first."""
        return [*self.targets, *self.unseen]

    @property
    def seed(self) -> int:
        """The seed of the choice of files and of stochastic defences."""
        return int(self.config.get("seed", 0))

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of ``report.json`` (keys and their order as always written)."""
        figures = {key: getattr(self, name) for name, key in _NAMES.items()}
        return {
            "images": self.images,
            **figures,
            "defences": {spec: result.to_dict() for spec, result in self.defences.items()},
            "data": self.data,
            "targets": self.targets,
            "unseen": self.unseen,
            "classes": self.classes,
            "files": self.files,
            "failed": self.failed,
            "protector": self.protector,
            "config": self.config,
            "wall_seconds": self.wall_seconds,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VerifyReport:
        """Read back what `to_dict` wrote (``report.json``).

        Raises:
            ValueError: If a figure is missing (the file is no verify report).
        """
        missing = [key for key in ("images", *_NAMES.values()) if key not in data]
        if missing:
            raise ValueError(
                f"not a verify report: no {', '.join(missing)}; expected the report.json "
                "that invprotect verify writes"
            )
        facts = ("data", "targets", "unseen", "classes", "files", "failed")
        return cls(
            images=data["images"],
            **{name: data[key] for name, key in _NAMES.items()},
            defences={
                spec: DefenceResult(**result) for spec, result in data.get("defences", {}).items()
            },
            **{name: data[name] for name in facts if name in data},
            protector=data.get("protector", {}),
            config=data.get("config", {}),
            wall_seconds=data.get("wall_seconds", 0.0),
        )
