"""Data: create a model from a labelled file, import more rows after a validation report, see the data."""
import streamlit as st

from core import imports, registry
from pages import _ordinal, _ui


NO_LINE = "(no business line)"  # rows imported without one: a blank name read as nothing


def upload_key() -> str:
    """The create form's uploader key: a new one after each model created, which empties it."""
    n = st.session_state.get("create_uploads", 0)
    return "create_file" if n == 0 else f"create_file_{n}"


def show_first_rows(rows, filename: str, key: str) -> None:
    """A file's first rows as read: the owner sees the text decoded right (GBK too) before writing."""
    st.caption(f"First rows of {filename} as read:")
    st.dataframe(rows, hide_index=True, key=key)


def grades_shown(typed: str, found: list[str]) -> None:
    """The grades' order as the model will keep it, and the file's grades while none are typed."""
    grades = [g.strip() for g in typed.split(",") if g.strip()]
    if grades:
        st.caption(_ordinal.order_caption(grades) + " (fixed once the model is created)")
    elif found:
        st.warning(f"The file's grades are {', '.join(found)}: type them above in their order, lowest first "
                   f"(a file cannot tell it, and it is fixed for good).", icon=":material/sort:")


st.title("Data")
store = _ui.store()
st.session_state.setdefault("create_test_share", 0.2)
create_tab, import_tab, summary_tab = st.tabs(["Create a model", "Import rows", "Summary"])

with create_tab:
    if st.session_state.pop("create_clear", False):  # a model was just created from this form: start afresh
        # assigned, not deleted: the browser keeps a deleted widget's old value on screen
        st.session_state.update(create_name="", create_description="", create_labels="", create_new_words="",
                                create_stop_words="", create_test_share=0.2, create_labels_from=None)
        st.session_state["create_uploads"] = st.session_state.get("create_uploads", 0) + 1  # a new, empty uploader
    st.caption("Upload a labelled file (columns `text,label`, optional `business_line,created_at`; "
               "CSV in any common Chinese encoding, or Excel). Part of it becomes the model's fixed test split.")
    task = _ordinal.task_choice()
    upload = st.file_uploader("Labelled file", type=["csv", "tsv", "txt", "xlsx", "xls"], key=upload_key())
    found = []
    if upload is not None:
        with _ui.errors_as_messages():
            found = imports.labels_in(upload.getvalue(), upload.name, task)
            show_first_rows(imports.first_rows(upload.getvalue(), upload.name, task), upload.name, "create_preview")
    if upload is not None and st.session_state.get("create_labels_from") != (upload.file_id, task):
        # a new file or task: prefill its labels, most frequent first; an ordinal model's grades only in
        # an order the file itself gives (numbers), else the owner types them: the order is fixed for good
        prefill = imports.grade_order(found) if task == registry.ORDINAL else found
        st.session_state["create_labels"] = ",".join(prefill)
        st.session_state["create_labels_from"] = (upload.file_id, task)
    # outside the form, so that the order it will keep is shown back while it is typed
    labels = st.text_input(_ordinal.labels_prompt(task), key="create_labels")
    if task == registry.ORDINAL:
        grades_shown(labels, found)
    with st.form("create_model"):
        new_name = st.text_input("Name", key="create_name", placeholder="客服工单分类")
        description = st.text_area("What problem does it solve?", key="create_description", height=70)
        c1, c2 = st.columns(2)
        new_words = c1.text_area("New words for the tokenizer (one per line)", key="create_new_words", height=90)
        stop_words = c2.text_area("Stop words (one per line)", key="create_stop_words", height=90)
        # its value lives in Session State only (set above): a default here too makes Streamlit complain
        test_share = st.slider("Held out as the test split", 0.0, 0.5, step=0.05, key="create_test_share")
        create = st.form_submit_button("Create model", type="primary")
    if create:
        if upload is None:
            st.error("Upload a labelled file first.")
        else:
            with _ui.errors_as_messages(), st.spinner("Checking and importing…"):
                report = imports.create_model_from_file(
                    store, new_name, labels, upload.getvalue(), _ui.user(), filename=upload.name,
                    description=description,
                    preprocess={"new_words": new_words.splitlines(), "stop_words": stop_words.splitlines()},
                    test_share=test_share, task=task)
            st.session_state["create_clear"] = True
            _ui.select_model(new_name.strip(), f"Model {new_name.strip()} created with {report.rows} rows. "
                                               f"Train its first version on the **Train** page.")

with import_tab:
    name = _ui.model_name()
    if not name:
        st.info("Create a model first.")
    else:
        st.caption(f"Add labelled rows to **{name}**. Nothing is written until the file passes every check.")
        split = st.radio("Into", ["train", "test"], horizontal=True, key="import_split",
                         format_func={"train": "training rows", "test": "the fixed test split"}.get)
        more = st.file_uploader("Labelled file", type=["csv", "tsv", "txt", "xlsx", "xls"], key="import_file")
        if more is not None:
            with _ui.errors_as_messages():
                report = imports.validate_examples(store, name, more.getvalue(), split, more.name)
            if report.ok:
                st.success(f"{more.name}: {report.rows} rows pass every check.")
                st.dataframe(report.summary(), hide_index=True, key="import_report")
                show_first_rows(report.frame[[c for c in ("text", "label", "business_line", "created_at")
                                              if c in report.frame]].head(5), more.name, "import_preview")
                for note in report.notes:  # repeated rows, contradictory labels: they import, but worth a look
                    st.warning(note)
                if st.button(f"Import {report.rows} rows into {split}", key="import_write", type="primary"):
                    with _ui.errors_as_messages(), st.spinner("Importing…"):
                        done = imports.import_examples(store, name, more.getvalue(), split, _ui.user(), more.name)
                        st.success(done.outcome(split))  # a repeated import says so
            else:
                st.error(f"{more.name} cannot be imported; nothing was written.")
                for problem in report.problems:
                    st.text(f"• {problem}")

with summary_tab:
    name = _ui.model_name()
    if name:
        with _ui.errors_as_messages():
            summary = imports.data_summary(store, name)
        if summary.empty:
            st.info(f"{name} has no labelled rows yet.")
        else:
            by_split = summary.pivot_table(index=["split", "source"], columns="label", values="rows",
                                           aggfunc="sum", fill_value=0)
            st.subheader("By split, source and label")
            st.dataframe(by_split, key="summary_split")
            st.subheader("By business line")
            lines = summary.assign(business_line=summary["business_line"].replace("", NO_LINE).fillna(NO_LINE))
            st.dataframe(lines.pivot_table(index="business_line", columns="split", values="rows", aggfunc="sum",
                                           fill_value=0), key="summary_line")
