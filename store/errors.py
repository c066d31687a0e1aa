"""One error type for everything a user can act on."""


class FeaturelabError(Exception):
    """A problem the caller can fix; the message says what went wrong and what to do."""


class NotFound(FeaturelabError):
    """The named dataset, item, annotation, feature set or feature does not exist."""


class InvalidInput(FeaturelabError):
    """A value was refused before anything was written."""


class FilterError(InvalidInput):
    """A filter JSON is malformed; the message names the bad part."""


class WorkspaceBusy(FeaturelabError):
    """Another process holds the workspace's write lock."""


class ModelUnavailable(FeaturelabError):
    """A model's weights could not be found or loaded; the message names the ways out."""
