"""SemiSegSlicer's second face: the label -> train -> review workflow in a web browser.

Built on trame-slicer (Slicer's MRML, slice views and segment editor, rendered on the server and
streamed to the page) and on ``SemiSegSlicerLib``, the same Qt-free glue as the Slicer module, so a
GPU server can train while the clinician reviews from a laptop. Started by ``semiseg serve``.

- :mod:`.app`: the application and :func:`~.app.serve`;
- :mod:`.security`: loopback by default, an access token beyond it;
- :mod:`.state`, :mod:`.ui`, :mod:`.logic`: state dataclasses, a UI that emits signals, the logic that connects them;
- :mod:`.painting`: the brush (and a work-around for a trame-slicer 2.0.0 bug);
- :mod:`.plot`: the loss and Dice curves.

Importing this package loads nothing heavy; trame and the MRML classes are imported when the app is built.
"""
