from numdoctor.cli import entry

entry()
