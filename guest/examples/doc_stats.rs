//! Document statistics over one file: the bundled example for `sandpool run`.
sandpool_guest::export_task!(sandpool_guest::workloads::doc_stats);
