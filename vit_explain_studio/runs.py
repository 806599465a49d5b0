"""Which model-pass parameters an explainer page shows, and running them with a progress bar and Cancel.

The parameters that need model passes are plain widgets with a *Run* button (not a form: a form sends
nothing to the server until it is submitted, so the page could not tell that a value changed). The page
keeps two sets per method: the *applied* one (the last Run; the first visit applies the widgets' values at
once) and the *done* one (the last set whose passes finished). Changing a widget shows a "press Run" hint and
leaves the result of the applied set on screen; Run applies the widgets. Cancel stops the passes and goes
back to the done set, so the previous result stays on the page instead of a blank.
"""

from __future__ import annotations

import streamlit as st

import explainers
from explainers import METHODS

from . import compute
from .state import Context


def _name(method: str) -> str:
    return METHODS[method].display_name if method in METHODS else method


def _keys(key: str, method: str) -> tuple[str, str, str, str]:
    base = f"{key}.{method}"
    return f"{base}.applied", f"{base}.done", f"{key}.cancelled", f"{base}.cancel_note"


def applied(ctx: Context, method: str, current: dict, run_clicked: bool, key: str) -> tuple[dict, bool]:
    """The model-pass parameters to show now, and whether the widgets differ from them (the "press Run" hint).
    Run (or a first visit, or an applied set the current model refuses) applies the widgets' values."""
    akey, _, flag, _ = _keys(key, method)
    if run_clicked:
        st.session_state.pop(flag, None)
    chosen = st.session_state.get(akey)
    if not run_clicked and chosen is not None:
        try:
            compute.split_params(method, chosen, ctx.model)
        except explainers.ExplainerError:
            chosen = None  # e.g. a layer the newly chosen model does not have
    if run_clicked or chosen is None:
        chosen = dict(current)
        st.session_state[akey] = chosen
    return chosen, chosen != current


def pending_hint(method: str) -> None:
    st.info(f"Parameters changed: press **Run** to compute {_name(method)} with them. The result below is for "
            "the values of the last run.", icon=":material/play_arrow:")


def _cancel(key: str, method: str, job) -> None:
    """Cancel's callback (runs before the next rerun): remember the cancelled job, go back to the last set
    whose passes finished (its result stays on the page)."""
    akey, dkey, flag, note = _keys(key, method)
    st.session_state[flag] = job
    done = st.session_state.get(dkey)
    if done is not None and done != st.session_state.get(akey):
        st.session_state[akey] = dict(done)
        st.session_state[note] = True


def ensure_capture(ctx: Context, method: str, heavy: dict, key: str) -> bool:
    """Make sure the method's capture (its model passes) for these parameters is cached: at once when it
    is, else with a progress bar and a Cancel button (a click on Cancel interrupts the run). Errors become
    messages (no traceback). Returns whether the capture is ready."""
    akey, dkey, flag, note = _keys(key, method)
    if st.session_state.pop(note, False):
        st.warning("Cancelled. The result below is for the previous parameters.", icon=":material/undo:")
    try:
        full_heavy, _ = compute.split_params(method, heavy, ctx.model)
        job = compute.capture_key(ctx, method, full_heavy)
        if job in compute.captures():
            st.session_state[dkey] = dict(heavy)
            return True
        if st.session_state.get(flag) == job:
            st.warning("Cancelled. Change a parameter, or run it again.")
            if st.button("Run again", key=f"{key}.again"):
                st.session_state.pop(flag, None)
                st.rerun()
            return False
        slot = st.empty()
        with slot.container():
            st.button("Cancel", key=f"{key}.cancel", on_click=_cancel, args=(key, method, job),
                      help="Stop this computation (the previous result, if any, comes back).")
            prog = compute.Progress(f"{_name(method)}: {METHODS[method].cost}…")
            compute.get_capture(ctx, method, heavy, prog)
        slot.empty()
        st.session_state[dkey] = dict(heavy)
        return True
    except explainers.Cancelled:
        st.warning("Cancelled.")
    except explainers.ExplainerError as e:
        st.error(f"{_name(method)} failed: {e}")
    return False
