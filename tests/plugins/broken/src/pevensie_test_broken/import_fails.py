"""A plugin whose import fails."""

import pevensie_test_no_such_module  # noqa: F401
