"""``cotscope view``: a local web app to browse, compare and label the traces of a store.

Lists traces with filters (model, strategy, benchmark, run, judge/monitor label, parse error, human label,
reasoning provenance, reasoning that never finished) and substring search over prompt, reasoning and answer;
shows one trace with its reasoning steps beside the answer, each provenance span in its kind (prefill apart from
the model's own text, notes for opaque content and cuts), every judge and monitor result with its evidence marked
at the verified offsets (incomplete outcomes and verdicts from the reasoning said as such), agent steps and PRM
step scores; compares two traces of one prompt side by side; stores human labels (name, value, note, author, time)
in the store and exports them as a labelled file for ``cotscope validate`` and the agreement benchmarks.

Binds to 127.0.0.1 by default; writes need the token printed at start-up; ``read_only`` refuses them. See
docs/view.md.
"""

from cotscope.view._access import StoreAccess, StoreBusy
from cotscope.view._app import ViewSettings, create_app
from cotscope.view._query import Filters, list_page
from cotscope.view._serve import ViewServer, serve, serve_in_thread

__all__ = [
    "Filters",
    "StoreAccess",
    "StoreBusy",
    "ViewServer",
    "ViewSettings",
    "create_app",
    "list_page",
    "serve",
    "serve_in_thread",
]
