"""Nothing a user uploads or imports is ever unpickled or executed: a pickle whose loading
would leave a marker file goes through upload, export and import, and the marker never
appears."""
import pickle

from store import Workspace


class _Trap:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))  # unpickling this creates the marker file


def test_pickles_and_checkpoints_are_only_bytes(ws_embedded, tmp_path):
    marker = tmp_path / "was-unpickled"
    payload = pickle.dumps(_Trap(marker))
    ds = ws_embedded.datasets.create("d")
    results = ds.items.upload([("model.pt", payload), ("data.pkl", payload), ("weights.ckpt", payload)])
    assert [r.status for r in results] == ["added", "duplicate", "duplicate"]
    assert results[0].item.kind == "other" and results[0].item.download() == payload
    archive = ds.export(tmp_path / "d.zip")
    with Workspace.open(tmp_path / "other") as other:
        copy = other.import_dataset(archive)
        assert copy.items.list().items[0].download() == payload
    assert not marker.exists()
    pickle.loads(payload).close()  # the trap is live: loading it is what would have left the marker
    assert marker.exists()
