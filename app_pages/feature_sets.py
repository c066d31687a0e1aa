"""Feature sets: create one, list them with their counts, delete one after a confirmation."""
from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
import streamlit as st

from components.models import (architectures, local_model_record, model_choice_label, model_choices, model_record,
                               runs_offline)
from components.pickers import dataset_picker
from components.state import flash, show_error, user_errors, workspace
from store import FeaturelabError, FeatureSet, Workspace

LOCAL = "A checkpoint on this machine (file or folder)…"


def draw_local_model(column) -> dict | None:
    """A checkpoint file (with its architecture) or a model folder on this machine, loaded at
    once to check it; its record when it loads, else what is wrong, said right here."""
    path = column.text_input("Checkpoint file or model folder", key="sets:local-model",
                             placeholder="/models/vit-b-32.safetensors, or /models/my-clip (open_clip_config.json inside)")
    arch = column.selectbox("Architecture (for a checkpoint file)", [None, *architectures()], key="sets:local-arch",
                            format_func=lambda a: "— (a model folder says it)" if a is None else a,
                            help="The open_clip architecture the checkpoint was saved from, e.g. ViT-B-32.")
    if not path.strip():
        column.caption("Weights you have here: an open_clip .safetensors / .pt / .bin state dict with its "
                       "architecture, an open_clip folder, or a sentence-transformers folder.")
        return None
    try:
        record = local_model_record(path.strip(), arch)
    except FeaturelabError as exc:
        show_error(str(exc), column)
        return None
    column.success(f"Loaded {record['name']}: vectors of size {record['size']}.", icon=":material/check_circle:")
    return record


def chosen_model_record(model: str, column) -> dict | None:
    """A listed model's record; one that cannot run here says so now, with the way out."""
    try:
        return model_record(model)
    except FeaturelabError as exc:
        show_error(str(exc), column)
        column.caption(f"To use weights you have on this machine, choose **{LOCAL}** in the model list.")
        return None


def draw_create_form(ws: Workspace) -> None:
    st.subheader("Create a feature set")
    left, right = st.columns(2)
    name = left.text_input("Name", key="sets:name", placeholder="e.g. clip-photos")
    model = right.selectbox(
        "Model", [None, LOCAL, *model_choices()], key="sets:model",
        format_func=lambda m: "None (vectors come from elsewhere)" if m is None else m if m == LOCAL else model_choice_label(m),
        help="The model that makes the vectors; its size becomes the set's. \"runs offline\": its weights are "
             "on this machine. \"needs a download\": the first job fetches them (needs internet).",
    )
    record = None
    if model == LOCAL:
        record = draw_local_model(right)
    elif model is not None:
        record = chosen_model_record(model, right)
        if record is not None and not runs_offline(model):
            right.caption("Its weights are not on this machine yet: the first job downloads them.")
    if record is not None:
        # Keyed by the size: a model change shows its own fixed size, not the last one.
        size = left.number_input("Size (vector length)", value=record["size"], disabled=True,
                                 key=f"sets:size-fixed:{record['size']}", help="Fixed by the model.")
    else:
        size = left.number_input("Size (vector length)", min_value=1, max_value=65536, value=512, step=1,
                                 key="sets:size", disabled=model is not None)
    set_type = right.text_input("Set type", value="embeddings", key="sets:type")
    entity_type = left.selectbox("Entity type", ["item", "annotation"], key="sets:entity",
                                 help="Item: one vector per file. Annotation: one vector per box.")
    if st.button("Create feature set", key="sets:create", type="primary", icon=":material/add:",
                 disabled=model is not None and record is None):
        fs = ws.feature_sets.create(
            name=name, size=int(size), set_type=set_type.strip(), entity_type=entity_type, model=record,
        )
        flash("sets", f"Created feature set **{fs.name}** (size {fs.size}).")
        st.rerun()


def draw_set_table(ws: Workspace, sets: list[FeatureSet]) -> None:
    """The sets with their counts and how far each one's approximate index is built; while
    one is building, the table redraws itself every few seconds."""
    states = {fs.id: ws.index_state(fs.id) for fs in sets}
    building = not all(state.caught_up for state in states.values())

    @st.fragment(run_every=3 if building else None)
    def table() -> None:
        fresh = {fs.id: ws.index_state(fs.id) for fs in sets} if building else states
        st.dataframe(
            pd.DataFrame([
                {"name": fs.name, "size": fs.size, "type": fs.set_type, "entity": fs.entity_type,
                 "model": (fs.model or {}).get("name", ""), "vectors": fs.count(),
                 "approximate index": fresh[fs.id].describe(), "id": fs.id}
                for fs in sets
            ]),
            hide_index=True, width="stretch", key="sets:table",
        )
        if building:
            st.caption("Exact search answers every query meanwhile; approximate search uses the index once it is built.")

    table()


def draw_import_section(ws: Workspace, by_id: dict[str, FeatureSet]) -> None:
    """Precomputed vectors from a file into a set, matched to items by name or id."""
    st.subheader("Import precomputed vectors")
    st.caption("Vectors no model here made (like customer profiles): a CSV or Parquet file with a key column "
               "(`name` or `id`) and one column per value, or an `.npz` with `keys` and `vectors`.")
    left, right = st.columns(2)
    target_id = left.selectbox("Into feature set", list(by_id), key="sets:import-set",
                               format_func=lambda i: f"{by_id[i].name} (size {by_id[i].size})")
    key_kind = right.radio("Rows are keyed by", ["name", "id"], horizontal=True, key="sets:import-key",
                           format_func={"name": "item name (or /dir/name)", "id": "item id"}.get)
    scope = dataset_picker(ws, "Match names in dataset", key="sets:import-dataset", allow_all=True)
    vectors_file = st.file_uploader("Vectors file", type=["csv", "tsv", "parquet", "npz"], key="sets:import-file")
    if st.button("Import vectors", key="sets:import-go", icon=":material/upload_file:",
                 disabled=vectors_file is None):
        from store.io import import_vectors

        # The reader goes by the file's suffix, so the upload is written under its own.
        suffix = Path(vectors_file.name).suffix.lower()
        with tempfile.TemporaryDirectory(prefix="featurelab-vectors-") as tmp:
            path = Path(tmp) / f"vectors{suffix}"
            path.write_bytes(vectors_file.getvalue())
            report = import_vectors(ws, by_id[target_id], path, key=key_kind, dataset=scope,
                                    display_name=vectors_file.name)
        summary = report.summary()
        flash("sets", summary[0].upper() + summary[1:] + ".", "warning" if report.unmatched else "success")
        st.rerun()


def draw_delete_section(by_id: dict[str, FeatureSet]) -> None:
    """Pick a set, press Delete…, then confirm (the pending choice survives the rerun)."""
    st.subheader("Delete a feature set")
    victim_id = st.selectbox("Feature set to delete", list(by_id), key="sets:delete-pick",
                             format_func=lambda i: by_id[i].name)
    pending = st.session_state.get("sets:confirm")
    if pending not in by_id:
        if st.button("Delete…", key="sets:delete", icon=":material/delete:"):
            st.session_state["sets:confirm"] = victim_id
            st.rerun()
        return
    victim = by_id[pending]
    st.warning(
        f"Delete **{victim.name}** and its {victim.count()} vectors? The items stay; this cannot be undone.",
        icon=":material/warning:",
    )
    yes, no = st.columns(2)
    if yes.button("Yes, delete it", key="sets:delete-yes", type="primary"):
        st.session_state.pop("sets:confirm", None)
        victim.delete()
        flash("sets", f"Deleted feature set **{victim.name}**.")
        st.rerun()
    if no.button("Cancel", key="sets:delete-no"):
        st.session_state.pop("sets:confirm", None)
        st.rerun()


st.title("Feature sets")
st.caption("A feature set holds vectors of one size, for items or annotations, made by one model or imported.")

with user_errors():  # each section has its own scope below: an error there keeps the others
    ws = workspace()
    flash("sets")
    with user_errors():
        draw_create_form(ws)
    sets = ws.feature_sets.list()
    st.subheader(f"{len(sets)} feature set{'s' if len(sets) != 1 else ''}")
    if not sets:
        st.info("No feature set yet: create one above, then fill it on the **Embed** page.")
    else:
        by_id = {fs.id: fs for fs in sets}
        with user_errors():
            draw_set_table(ws, sets)
        with user_errors():
            draw_import_section(ws, by_id)
        with user_errors():
            draw_delete_section(by_id)
