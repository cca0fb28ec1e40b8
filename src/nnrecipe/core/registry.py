"""The finding catalogue and the checks that produce it.

A check is a small class that declares, on the class, the finding code it emits, its stage,
default severity, a one-line title and the fix. Declaring the class registers it; a code
declared twice is an error at import, so codes stay unique and stable.

Codes that are emitted by something other than a :class:`Check` (the training monitor's
detectors, say) are declared with :func:`declare_code` or by subclassing :class:`Declared`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from nnrecipe.core.findings import Finding, Severity
from nnrecipe.core.stages import ANY_STAGE, STAGE_NAMES

if TYPE_CHECKING:
    from nnrecipe.core.context import Context

_CODE_RE = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")


@dataclass(frozen=True)
class CodeInfo:
    code: str
    stage: str
    severity: Severity
    title: str
    fix: str
    declared_by: str


CATALOGUE: dict[str, CodeInfo] = {}
CHECKS: dict[str, type[Check]] = {}


class DuplicateCodeError(RuntimeError):
    """Two declarations claim the same finding code (or check name)."""


def declare_code(code: str, stage: str, severity: Severity, title: str, fix: str,
                 declared_by: str = "") -> CodeInfo:
    """Add ``code`` to the catalogue. Raises :class:`DuplicateCodeError` if it exists."""
    if not _CODE_RE.match(code):
        raise ValueError(f"finding code {code!r} is not a lower-case slug like 'dead-relu'")
    if stage not in STAGE_NAMES and stage != ANY_STAGE:
        raise ValueError(f"code {code!r} declares unknown stage {stage!r}; valid: {STAGE_NAMES}")
    if not title or not fix:
        raise ValueError(f"code {code!r} must declare a title and a fix")
    if code in CATALOGUE:
        other = CATALOGUE[code].declared_by
        raise DuplicateCodeError(f"finding code {code!r} declared twice: by {other} and {declared_by}")
    info = CodeInfo(code, stage, Severity(severity), title, fix, declared_by)
    CATALOGUE[code] = info
    return info


def code_info(code: str) -> CodeInfo:
    try:
        return CATALOGUE[code]
    except KeyError:
        raise KeyError(f"finding code {code!r} is not in the catalogue") from None


class Declared:
    """Base for classes that declare one finding code on the class.

    Subclasses set ``code``, ``stage``, ``severity``, ``title`` and ``fix``; abstract
    intermediate classes leave ``code`` as ``None``.
    """

    code: ClassVar[str | None] = None
    stage: ClassVar[str] = ANY_STAGE
    severity: ClassVar[Severity] = Severity.WARNING
    title: ClassVar[str] = ""
    fix: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("code") is not None:
            declare_code(cls.code, cls.stage, cls.severity, cls.title, cls.fix,  # type: ignore[arg-type]
                         declared_by=f"{cls.__module__}.{cls.__qualname__}")

    @classmethod
    def make_finding(cls, message: str, evidence: dict | None = None, *,
                     severity: Severity | None = None, fix: str | None = None,
                     code: str | None = None, stage: str | None = None) -> Finding:
        """A finding of this class's code (or of ``code``, which must be in the catalogue)."""
        info = code_info(code or cls.code)  # type: ignore[arg-type]
        return Finding(code=info.code, severity=Severity(severity or info.severity),
                       stage=stage or info.stage, message=message, evidence=evidence or {},
                       fix=fix or info.fix)


class Check(Declared):
    """One check of one recipe stage.

    ``run`` returns (or yields) findings; it records numbers, tables and figures through
    ``ctx`` (``ctx.record``, ``ctx.add_table``, ``ctx.add_figure``). A check with nothing
    to say returns no findings and is shown as passed. ``applies`` may return a reason to skip.
    Checks that emit codes beyond their own list them in ``emits``.
    """

    name: ClassVar[str] = ""
    order: ClassVar[int] = 50  # position in its stage; lower runs first
    emits: ClassVar[tuple[str, ...]] = ()
    # Fewer training samples than this and the runner skips the check, saying why (e.g. 2
    # for a check that holds samples out of training when there is no validation split).
    min_train_samples: ClassVar[int] = 1

    def __init_subclass__(cls, **kwargs: object) -> None:
        if cls.__dict__.get("code") is not None and not cls.__dict__.get("name"):
            cls.name = cls.__dict__["code"]
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("name"):
            if cls.stage not in STAGE_NAMES:
                raise ValueError(f"check {cls.name!r} declares unknown stage {cls.stage!r}")
            if cls.name in CHECKS:
                raise DuplicateCodeError(f"check name {cls.name!r} registered twice")
            CHECKS[cls.name] = cls

    def applies(self, ctx: Context) -> str | None:
        """Return a reason why this check does not apply, or None to run it."""
        return None

    def run(self, ctx: Context) -> Iterable[Finding] | None:
        raise NotImplementedError

    def finding(self, message: str, evidence: dict | None = None, *,
                severity: Severity | None = None, fix: str | None = None,
                code: str | None = None) -> Finding:
        f = self.make_finding(message, evidence, severity=severity, fix=fix, code=code,
                              stage=self.stage)
        f.check = self.name
        return f


def checks_for_stage(stage: str) -> list[type[Check]]:
    return sorted((c for c in CHECKS.values() if c.stage == stage), key=lambda c: (c.order, c.name))


CHECK_CRASHED = declare_code(
    "check-crashed", ANY_STAGE, Severity.WARNING,
    "A check itself failed; the other checks still ran",
    "Read the error in the evidence. If your experiment is unusual (custom batch structure, "
    "model outputs that are not tensors), the check may not support it; otherwise report it.",
    declared_by="nnrecipe.core.registry",
)
