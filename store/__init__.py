"""featurelab's store: workspace, datasets, items, annotations, feature sets, features,
search in the Dataloop-style filter language, export and import. Never imports streamlit.

The app and scripts import from here or from a wing's top (``store.search``, ``store.index``,
``store.embedders``, ``store.analysis``, ``store.io``), never from a module inside a wing."""
from .errors import FeaturelabError, FilterError, InvalidInput, NotFound, WorkspaceBusy
from .files import normalize_dir
from .search.filters import Filters
from .records import Annotation, Dataset, Feature, FeatureSet, Item, Pages, UploadResult
from .io.transfer import export_dataset, import_dataset
from .workspace import Workspace, default_home

__all__ = [
    "Annotation", "Dataset", "Feature", "FeatureSet", "FeaturelabError", "Filters", "FilterError",
    "InvalidInput", "Item", "NotFound", "Pages", "UploadResult", "Workspace", "WorkspaceBusy", "default_home",
    "export_dataset", "import_dataset", "normalize_dir",
]
