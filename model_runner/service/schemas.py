"""Request and response bodies of the pipeline routes (``model_runner/service/routes/tweets.py``).

Tweet ids are 64-bit integers; they are accepted as JSON numbers or strings and returned as strings,
as the X API does, so JavaScript clients do not lose precision. Times in responses are the ISO 8601
strings the routes write (``datetime.isoformat``), so they are typed ``str``.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from model_runner.tweets.alerts import KEY_PATTERN

# Tasks are declared in the tasks file, not in code: the shape is checked here, and each route checks
# that the name is declared (model_runner.tasks.get_task: 422 unknown_task).
TaskName = Annotated[
    str, Field(pattern=r"^[a-z][a-z0-9_]{0,39}$", description="A declared task (`GET /tasks` lists them).")
]

# Dates a caller may name: from X's first day to well past any tweet we will see. Outside, 422, so
# that date arithmetic (a window of days before a year-1 date) never overflows into a 500.
FIRST_DAY = date(2006, 1, 1)
LAST_DAY = date(2100, 1, 1)


def _sane_date(value: date) -> date:
    if not FIRST_DAY <= value <= LAST_DAY:
        raise ValueError(f"must be between {FIRST_DAY} and {LAST_DAY}")
    return value


def _sane_datetime(value: datetime) -> datetime:
    _sane_date(value.date())
    return value


SaneDate = Annotated[date, AfterValidator(_sane_date)]
SaneDatetime = Annotated[datetime, AfterValidator(_sane_datetime)]
MAX_OFFSET = 1_000_000
TweetId = Annotated[int, Field(gt=0, lt=2**63, description="X tweet id (number or numeric string)")]
Source = Annotated[
    str, Field(min_length=1, max_length=300, description="The watched account/query, e.g. 'query:acme'")
]
AlertKey = Annotated[
    str, Field(pattern=KEY_PATTERN.pattern, description="Incident key, e.g. 'regression:sentiment:v4'")
]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TweetIn(_Body):
    id: TweetId
    text: str = Field(min_length=1, max_length=10_000)
    author: str | None = Field(None, max_length=200)
    created_at: SaneDatetime | None = None


class TweetsRequest(_Body):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "found_by": "query:acme lang:en",
                    "tweets": [{"id": "1790000000000000001", "text": "love @acme", "author": "ann"}],
                }
            ]
        },
    )
    found_by: Source
    tweets: list[TweetIn] = Field(max_length=1000)


class PredictionIn(_Body):
    tweet_id: TweetId
    label: str = Field(min_length=1, max_length=100)
    scores: dict[str, float] = Field(min_length=1, max_length=100)

    @model_validator(mode="after")
    def _consistent(self) -> PredictionIn:
        if self.label not in self.scores:
            raise ValueError(f"label {self.label!r} is not one of the score keys")
        if any(not 0 <= p <= 1 for p in self.scores.values()):
            raise ValueError("scores must be probabilities in [0, 1]")
        return self


class PredictionsRequest(_Body):
    task: TaskName = "sentiment"
    model_version: str = Field(min_length=1, max_length=100)
    predictions: list[PredictionIn] = Field(max_length=1000)


class LabelIn(_Body):
    label: str = Field(min_length=1, max_length=100)
    text: str | None = Field(None, min_length=1, max_length=10_000)
    tweet_id: int | None = Field(None, gt=0, lt=2**63)

    @model_validator(mode="after")
    def _one_reference(self) -> LabelIn:
        if self.text is None and self.tweet_id is None:
            raise ValueError("a label needs a text or a tweet_id")
        return self


class LabelsRequest(_Body):
    task: TaskName = "sentiment"
    items: list[LabelIn] = Field(min_length=1, max_length=5000)


class DailyStatsRequest(_Body):
    task: TaskName = "sentiment"
    days: int = Field(8, ge=1, le=90, description="How many UTC days, ending with `until`, to recompute.")
    until: SaneDate | None = Field(None, description="Last day (inclusive); default today (UTC).")
    found_by: str | None = Field(None, min_length=1, max_length=300)
    log_to_mlflow: bool = True


class ClaimRequest(_Body):
    key: AlertKey
    kind: str = Field(min_length=1, max_length=50)
    summary: str | None = Field(None, max_length=2000)
    lease_s: float = Field(120, ge=0, le=86_400, description="After this, a pending claim is claimable.")


class FinishRequest(_Body):
    key: AlertKey
    token: str = Field(min_length=1, max_length=100)


class ResolveRequest(_Body):
    keys: list[AlertKey] = Field(min_length=1, max_length=500)


# --- responses ------------------------------------------------------------------------------------
# Each mirrors exactly the JSON its route has always returned: same keys, same types, no extras.

IsoTime = Annotated[str, Field(description="ISO 8601 time, e.g. '2026-05-01T12:00:00+00:00'")]
AlertState = Literal["pending", "sent", "released", "resolved"]


class TweetsStored(BaseModel):
    received: int
    inserted: int = Field(description="Tweets not stored before.")
    linked: int = Field(description="New (tweet, source) pairs, e.g. a known tweet found by a second query.")
    embedded: int = Field(description="Vectors computed now (0 if embedding failed: a later call adds them).")


class PredictionsStored(BaseModel):
    received: int
    inserted: int
    queued_for_review: int
    review_threshold: float


class ReviewEntry(BaseModel):
    tweet_id: str
    text: str
    author: str | None
    predicted_label: str
    top_score: float
    model_version: str
    queued_at: IsoTime


class ReviewPage(BaseModel):
    task: TaskName
    total: int
    items: list[ReviewEntry]


class LabelsImported(BaseModel):
    received: int
    added: int
    duplicates: int
    removed_from_review: int
    unknown_tweets: list[str]


class DailyStatRow(BaseModel):
    task: str
    found_by: str
    day: date
    volume: int
    counts: dict[str, int]
    shares: dict[str, float]
    mean_confidence: float | None
    model_versions: list[str]
    changed: bool
    mlflow_run_id: str | None


class DailyStatsPage(BaseModel):
    task: TaskName
    first_day: date
    last_day: date
    rows: list[DailyStatRow]
    served_rows: list[DailyStatRow] = Field(
        default_factory=list,
        description="The same statistics of served traffic (sampled /inference answers) per UTC day,"
        " `found_by` = `served`: computed on read, not stored or logged to MLflow.",
    )


class DailyStatsComputed(DailyStatsPage):
    changed: int = Field(description="Rows new or different from what was stored.")
    logged_to_mlflow: int
    mlflow_experiment: str


class DriftReferencePrepared(BaseModel):
    task: TaskName
    recorded_dataset: bool
    embedded: int
    notes: list[str]


class TimeWindow(BaseModel):
    since: IsoTime
    until: IsoTime


class DriftSource(BaseModel):
    source: Literal["inspected", "served"] = Field(
        description="`inspected`: the inspector's tweets; `served`: sampled /inference answers."
    )
    volume: int
    embedded: int = Field(description="Live texts with a vector (served answers keep none).")
    centroid_distance: float | None
    shares: dict[str, float]
    dominant_label: str | None
    dominant_share: float | None
    mean_confidence: float | None = Field(description="Mean top score of the predictions.")
    share_distance: float | None = Field(
        description="Total variation distance (0..1) between the class shares and the training shares."
    )


class DriftView(BaseModel):
    task: TaskName
    window: TimeWindow
    live_tweets: int
    live_embedded: int
    reference_examples: int
    reference_embedded: int
    centroid_distance: float | None
    live_shares: dict[str, float]
    reference_shares: dict[str, float]
    dominant_label: str | None
    dominant_share: float | None
    notes: list[str]
    source: Literal["inspected", "served"] = Field(
        "inspected",
        description="Which source the class-share fields (live_tweets, live_shares, dominant_*) describe:"
        " the one with the highest dominant share. The embedding fields are always the inspected tweets'.",
    )
    sources: list[DriftSource] = Field(
        default_factory=list, description="Each live source of the window against the training data."
    )


class SummaryExample(BaseModel):
    tweet_id: str
    author: str | None
    text: str
    created_at: IsoTime | None
    similarity: float


class ClassSummaryView(BaseModel):
    label: str
    count: int
    share: float
    mean_confidence: float
    examples: list[SummaryExample]


class ServedShares(BaseModel):
    volume: int = Field(description="Sampled /inference answers in the window.")
    shares: dict[str, float]
    mean_confidence: float | None


class TweetsSummary(BaseModel):
    task: TaskName
    window: TimeWindow
    found_by: str | None
    volume: int
    shares: dict[str, float]
    mean_confidence: float | None
    classes: list[ClassSummaryView]
    served: ServedShares | None = Field(
        None, description="Served traffic of the same window (none when `found_by` names a source)."
    )


class AlertClaim(BaseModel):
    key: str
    granted: bool
    state: AlertState
    token: str | None = Field(description="Only when granted: confirm or release with it.")
    occurrences: int
    sent_at: IsoTime | None


class AlertFinished(BaseModel):
    key: str
    state: Literal["sent", "released"]


class AlertsResolved(BaseModel):
    resolved: int


class AlertView(BaseModel):
    key: str
    kind: str
    state: AlertState
    summary: str | None
    occurrences: int
    first_seen_at: IsoTime
    claimed_at: IsoTime | None
    sent_at: IsoTime | None
    resolved_at: IsoTime | None


class AlertList(BaseModel):
    alerts: list[AlertView]
