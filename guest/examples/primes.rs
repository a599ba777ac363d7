//! Pure CPU work: counts the primes below the input number.
sandpool_guest::export_task!(sandpool_guest::workloads::primes_task);
