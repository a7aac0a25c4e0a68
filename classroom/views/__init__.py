"""Web pages of the classroom app, one module per audience.

* :mod:`~classroom.views.teacher`: session list, create, live board, start/end, the report;
* :mod:`~classroom.views.exports`: the report's JSON and CSV exports;
* :mod:`~classroom.views.student`: join with a code and consent, the streaming page;
* :mod:`~classroom.views.common`: role checks, the session lookup, page constants, home.

Views read through :mod:`classroom.selectors` and write through :mod:`classroom.services` only.
The live parts (frames in, dashboard updates out) are WebSockets served by
:mod:`classroom.consumers`; the pages here render the initial state and the scripts that talk to
those sockets.
"""

from classroom.views.common import MAX_WIDTH_SCREEN_PX, MAX_WIDTH_WEBCAM_PX, home, is_teacher
from classroom.views.exports import session_export_csv, session_export_json
from classroom.views.student import (
    join,
    student,
    student_config,
    student_leave,
    student_withdraw,
)
from classroom.views.teacher import (
    participant_withdraw,
    session_create,
    session_detail,
    session_end,
    session_list,
    session_list_json,
    session_report,
    session_start,
)

__all__ = [
    "MAX_WIDTH_SCREEN_PX",
    "MAX_WIDTH_WEBCAM_PX",
    "home",
    "participant_withdraw",
    "student_withdraw",
    "is_teacher",
    "join",
    "session_create",
    "session_detail",
    "session_end",
    "session_export_csv",
    "session_export_json",
    "session_list",
    "session_list_json",
    "session_report",
    "session_start",
    "student",
    "student_config",
    "student_leave",
]
