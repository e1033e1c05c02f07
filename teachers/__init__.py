"""Where guidance comes from: the roles a network can play as a teacher. Importing this package
registers them all."""
from teachers import ema, ensemble, frozen, mutual, snapshot  # noqa: F401  (registration)
from teachers.role import TeacherRole

__all__ = ["TeacherRole"]
