"""The socket's fragments: the delta fast path writes exactly what its partial would."""

import pytest
from django.template.loader import render_to_string

from conversations.relay import fragments


@pytest.mark.parametrize(
    "answer, thinking",
    [("Hello <b>world</b> & \"friends\" 'x'", ""), ("", "Thinking about <script>"), ("a\\n b", "c\\td"), ("ünï ✓", "")],
)
def test_the_delta_fast_path_matches_its_partial(answer, thinking):
    event = {"type": "chat.delta", "message": 42, "seq": 3, "answer": answer, "thinking": thinking}
    assert fragments.delta(event) == render_to_string("conversations/stream.html#delta", event)


def test_a_delta_with_the_thinking_time_goes_through_the_partial():
    event = {"type": "chat.delta", "message": 42, "seq": 3, "answer": "x", "thinking": "", "thinking_seconds": 2.5}
    html = fragments.delta(event)
    assert 'id="msg-42-thinking-summary"' in html and "Thinking · 2.5 s" in html
