"""Train big, serve small: a larger encoder fine-tuned per task teaches the served student."""

from model_runner.teacher.source import DEFAULT_TEACHER_ID, TeacherDigestError, resolve_teacher
from model_runner.teacher.store import TeacherRecord, TeacherStore

__all__ = ["DEFAULT_TEACHER_ID", "TeacherDigestError", "TeacherRecord", "TeacherStore", "resolve_teacher"]
