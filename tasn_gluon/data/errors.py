"""The one exception type of the data package, so callers can catch bad-dataset problems apart
from programming errors."""


class DatasetError(ValueError):
    """A dataset on disk (split files, images, packed records, dataset.json) is missing or wrong.
    The message names the file or entry at fault and, where there is one, the fix."""


def first_few(items, count=5):
    """'a, b, c (and 7 more)': error messages name a few offenders, never thousands."""
    items = [str(i) for i in items]
    head = ', '.join(items[:count])
    if len(items) > count:
        head += ' (and %d more)' % (len(items) - count)
    return head
