"""Stage 1 of the data flow: reading and validating chat datasets (io), chat templates (chat), general-instruct pools (pool) and the built-in EM domains and benign task (datagen)."""
