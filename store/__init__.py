"""featurelab's store: workspace, datasets, items, annotations, feature sets, features,
search in the Dataloop-style filter language, export and import. Never imports streamlit."""
from .errors import FeaturelabError, FilterError, InvalidInput, NotFound
from .search.filters import Filters
from .records import Annotation, Dataset, Feature, FeatureSet, Item, Pages, UploadResult
from .io.transfer import export_dataset, import_dataset
from .workspace import Workspace

__all__ = [
    "Annotation", "Dataset", "Feature", "FeatureSet", "FeaturelabError", "Filters", "FilterError",
    "InvalidInput", "Item", "NotFound", "Pages", "UploadResult", "Workspace", "export_dataset",
    "import_dataset",
]
