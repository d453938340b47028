"""Clicks link the views of a registry reopened from its store (issue #24, item 1).

The store is read while a click is handled; ipykernel 7 can handle widget messages on
another thread than the one that opened the store, where a thread-bound SQLite connection
raised ``ProgrammingError`` and the details and the diff stayed on the old selection.
"""

from __future__ import annotations

import pytest

from .lab import cell_errors, kernel_eval, open_and_run, wait_kernel, write_notebook

pytestmark = pytest.mark.browser

CELLS = [
    """
import cnc_widgets as cnc
from cnc_widgets import examples

data = examples.digits()
first = cnc.ModelRegistry(store="clicks_store")
first.set_data(data.test_inputs, data.test_labels, classes=data.classes,
               instances=data.test_instances)
first.add("base", examples.train_digits_cnn(data, epochs=2))
first.compress("base", "prune", amount=0.75, name="pruned")
first.compress("base", "half", name="fp16")
first.evaluate(progress=False)
expected = first.compare("base", "pruned").agreement
""",
    # A later session: everything comes back from the store, read when a view asks.
    'reg = cnc.ModelRegistry(store="clicks_store")\nboard = cnc.dashboard(reg)\nboard',
]


@pytest.fixture(scope="module")
def page(lab, browser):
    write_notebook(lab["root"] / "store_clicks.ipynb", CELLS)
    page = browser.new_page()
    open_and_run(page, lab, "store_clicks.ipynb")
    page.wait_for_selector(".cnc-scatter [data-model]")
    yield page
    page.close()


def test_clicks_in_a_stored_registry_move_details_and_diff(page, lab):
    assert cell_errors(page) == []
    page.click('.cnc-scatter [data-model="base"]')
    wait_kernel(page, "reg.selected", "['base']")
    page.click('.cnc-scatter [data-model="pruned"]', modifiers=["Shift"])
    wait_kernel(page, "reg.selected", "['base', 'pruned']")
    # The views followed in the kernel...
    wait_kernel(page, "board.details.details['mode']", "'many'")
    wait_kernel(page, "(board.diff.reference, board.diff.compared)", "('base', ['pruned'])")
    # ...and in the page: the details name both, the diff compares them.
    page.wait_for_function(
        "() => document.querySelector('.cnc-details .cnc-title').textContent.endsWith('2 models')"
    )
    diff = page.locator(".cnc-diff").first
    diff.locator('[data-model="pruned"]').wait_for()
    agreement = float(kernel_eval(page, "expected"))
    text = diff.inner_text()
    assert f"{100 * agreement:.2f}".rstrip("0").rstrip(".") + "%" in text
    # Read from the store on the message's thread: the comparison is the one stored.
    assert kernel_eval(page, "reg.compare('base', 'pruned').agreement == expected") == "True"
    log = (lab["root"] / "lab.log").read_text(errors="replace")
    assert "SQLite objects created in a thread" not in log
    assert cell_errors(page) == []
