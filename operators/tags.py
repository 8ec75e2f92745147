"""Tags: declarative definitions, scoring with frozen models, hysteresis and delayed labels.

Two kinds of tag, both defined as data in the settings (``SEGSTREAM_TAGS``):

- **rule** tags hold while a feature condition holds, e.g. ``vip``: ``spend_90d > 1000``;
- **predictive** tags estimate the probability of a future outcome within a horizon, e.g.
  ``churn_risk``: no purchase in the next 90 days, ``likely_buyer``: a purchase in the next 30.
  A user enters the tag when the probability reaches ``enter`` and leaves it when it falls to
  ``exit`` (hysteresis, so a score hovering near one threshold does not flap).

Labels of predictive tags arrive late. When a (sampled) user is scored, the features are kept
as a :class:`PendingLabel`; the label is resolved as soon as it is known, from the snapshot's
features only (never later ones): a purchase within the horizon resolves it at that purchase,
and a horizon passing without one resolves it at the first scoring after it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from operators.features import DAY_MS, FEATURES, TAG_SLOTS

PURCHASE_WITHIN: Final = "purchase_within"  # label 1: a purchase within the horizon
NO_PURCHASE_WITHIN: Final = "no_purchase_within"  # label 1: no purchase within the horizon
_OPS: Final = {">": float.__gt__, ">=": float.__ge__, "<": float.__lt__, "<=": float.__le__}
MAX_TAGS: Final = TAG_SLOTS  # tags are a bit set in one byte of the user record

DEFAULT_TAG_FEATURES: Final = (
    "recency_days",
    "frequency",
    "monetary",
    "tenure_days",
    "inactive_days",
    "purchases_30d",
    "purchases_90d",
    "spend_90d",
    "views_30d",
    "carts_30d",
)


@dataclass(frozen=True, slots=True)
class TagDefinition:
    name: str
    kind: str  # "predictive" or "rule"
    # predictive
    label: str = ""
    horizon_days: float = 0.0
    enter: float = 0.5
    exit: float = 0.5
    features: tuple[str, ...] = DEFAULT_TAG_FEATURES
    # rule
    feature: str = ""
    op: str = ">"
    value: float = 0.0

    @property
    def horizon_ms(self) -> int:
        return round(self.horizon_days * DAY_MS)


DEFAULT_TAGS: Final = (
    TagDefinition(
        "churn_risk", "predictive", label=NO_PURCHASE_WITHIN, horizon_days=90, enter=0.7, exit=0.5
    ),
    TagDefinition(
        "likely_buyer", "predictive", label=PURCHASE_WITHIN, horizon_days=30, enter=0.6, exit=0.4
    ),
    TagDefinition("vip", "rule", feature="spend_90d", op=">", value=1000.0),
)


def parse_tags(text: str) -> tuple[TagDefinition, ...]:
    """Tag definitions from JSON (a list of objects with TagDefinition's fields)."""
    try:
        docs = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"tags: not JSON ({exc})") from None
    if not isinstance(docs, list):
        raise ValueError("tags: expected a JSON list of tag objects")
    tags = []
    for doc in docs:
        if not isinstance(doc, dict):
            raise ValueError("tags: each tag is a JSON object")
        fields: dict[str, Any] = {k: tuple(v) if k == "features" else v for k, v in doc.items()}
        try:
            tag = TagDefinition(**fields)
        except TypeError as exc:
            raise ValueError(f"tags: {exc}") from None
        validate_tag(tag)
        tags.append(tag)
    if len({t.name for t in tags}) != len(tags) or len(tags) > MAX_TAGS:
        raise ValueError(f"tags: names must be unique, at most {MAX_TAGS} tags")
    return tuple(tags)


def validate_tag(tag: TagDefinition) -> None:
    if tag.kind == "rule":
        if tag.feature not in FEATURES or tag.op not in _OPS:
            raise ValueError(f"tag {tag.name}: rule needs a known feature and one of {list(_OPS)}")
    elif tag.kind == "predictive":
        if tag.label not in (PURCHASE_WITHIN, NO_PURCHASE_WITHIN) or tag.horizon_days <= 0:
            raise ValueError(
                f"tag {tag.name}: label must be {PURCHASE_WITHIN} or "
                f"{NO_PURCHASE_WITHIN}, with a positive horizon_days"
            )
        if not 0 <= tag.exit <= tag.enter <= 1:
            raise ValueError(f"tag {tag.name}: need 0 <= exit <= enter <= 1")
        unknown = set(tag.features) - set(FEATURES)
        if unknown or not tag.features:
            raise ValueError(f"tag {tag.name}: unknown features {sorted(unknown)}")
    else:
        raise ValueError(f"tag {tag.name}: kind must be 'rule' or 'predictive'")


@dataclass(frozen=True, slots=True)
class TagModel:
    """A frozen logistic model: ``p = sigmoid(b + sum w_i * (log1p(x_i) - mean_i) / std_i)``.

    ``ready`` is False until enough labels of both kinds have arrived ("insufficient data"):
    scorers then report no score and change no membership.
    """

    tag: str
    version: int
    features: tuple[str, ...]
    means: tuple[float, ...]
    stds: tuple[float, ...]
    weights: tuple[float, ...]
    intercept: float
    ready: bool
    metrics: Mapping[str, float] = field(default_factory=dict)  # e.g. auc, log_loss, labels
    # The same model folded into z = offset + sum(coefficient_i * log1p(x_i)), for speed.
    coefficients: tuple[float, ...] = field(init=False, compare=False, repr=False)
    offset: float = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        coefficients = tuple(w / s for w, s in zip(self.weights, self.stds, strict=True))
        object.__setattr__(self, "coefficients", coefficients)
        object.__setattr__(
            self,
            "offset",
            self.intercept - sum(c * m for c, m in zip(coefficients, self.means, strict=True)),
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "tag": self.tag,
            "version": self.version,
            "features": list(self.features),
            "means": list(self.means),
            "stds": list(self.stds),
            "weights": list(self.weights),
            "intercept": self.intercept,
            "ready": self.ready,
            "metrics": dict(self.metrics),
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, object]) -> TagModel:
        def floats(key: str) -> tuple[float, ...]:
            value = doc[key]
            assert isinstance(value, list)
            return tuple(float(v) for v in value)

        features, metrics, version = doc["features"], doc.get("metrics", {}), doc["version"]
        assert isinstance(features, list) and isinstance(metrics, dict)
        assert isinstance(version, int)
        return cls(
            tag=str(doc["tag"]),
            version=version,
            features=tuple(str(f) for f in features),
            means=floats("means"),
            stds=floats("stds"),
            weights=floats("weights"),
            intercept=float(str(doc["intercept"])),
            ready=bool(doc["ready"]),
            metrics={str(k): float(v) for k, v in metrics.items()},
        )


def usable_models(
    models: Mapping[str, TagModel],
    tags: Sequence[TagDefinition],
) -> dict[str, TagModel]:
    """The stored models of the tags defined now, on the features they are defined on."""
    defined = {t.name: t.features for t in tags}
    return {name: model for name, model in models.items() if defined.get(name) == model.features}


def predict_one(model: TagModel, features: Mapping[str, float]) -> float:
    """The probability of the tag's outcome for these (raw) features."""
    return predict_logged(model, {f: math.log1p(max(features[f], 0.0)) for f in model.features})


def predict_logged(model: TagModel, logs: Mapping[str, float]) -> float:
    """:func:`predict_one` from ``log1p`` of the features, computed once for all tags."""
    z = model.offset
    for f, c in zip(model.features, model.coefficients, strict=True):
        z += c * logs[f]
    return 1 / (1 + math.exp(-z)) if z > -700 else 0.0


def holds(
    tag: TagDefinition,
    had: bool,
    features: Mapping[str, float],
    model: TagModel | None,
    logs: Mapping[str, float] | None = None,
) -> tuple[bool, float | None]:
    """(membership after this scoring, score) for one tag; ``had``: membership before.

    ``logs`` may carry ``log1p`` of the features, shared between tags.
    """
    if tag.kind == "rule":
        return _OPS[tag.op](float(features[tag.feature]), tag.value), None
    if model is None or not model.ready:
        return had, None  # insufficient data: leave membership as it is
    score = predict_one(model, features) if logs is None else predict_logged(model, logs)
    if had:
        return score > tag.exit, score
    return score >= tag.enter, score


def tag_reason(
    tag: TagDefinition,
    entered: bool,
    features: Mapping[str, float],
    model: TagModel | None,
    top: int = 3,
) -> tuple[str, ...]:
    """The features that pushed a user into (``entered``) or out of a tag, strongest first."""
    if tag.kind == "rule":
        return (tag.feature,)
    if model is None:
        return ()
    sign = 1.0 if entered else -1.0
    pushes = {
        f: sign * c * (math.log1p(max(features[f], 0.0)) - m)
        for f, c, m in zip(model.features, model.coefficients, model.means, strict=True)
    }
    return tuple(sorted((f for f, p in pushes.items() if p > 0), key=lambda f: -pushes[f]))[:top]
