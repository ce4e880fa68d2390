"""A job's policies as pure rules, the same for every engine and store: which missed
instants run (`misfire`), when a failed attempt runs again (`retry`), and what a due run
does about its job's running ones (`overlap`)."""
