"""The applications over the library: the ``ifan`` command line (:mod:`~ifan.apps.cli`), the file
loop shared by ``ifan deblur``, ``ifan serve`` and ``ifan demo`` (:mod:`~ifan.apps.files`), the web
page (:mod:`~ifan.apps.serve`) and the demo (:mod:`~ifan.apps.demo`). Nothing in the library
imports from here."""
