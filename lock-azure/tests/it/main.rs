//! lock-azure against Azurite (Microsoft's Azure Storage emulator, started here as a
//! plain process): the whole suite on Blob and on Table, and what a bad URL or a missing
//! credential says.

mod blob {
    use lock_conformance::fixtures::{AZURITE_TIMING, azure_urls, harness_timed};
    lock_conformance::conformance_tests!(harness_timed(&lock_azure::BLOB, azure_urls().await.map(|(blob, _)| blob), AZURITE_TIMING).await);
}

mod table {
    use lock_conformance::fixtures::{AZURITE_TIMING, azure_urls, harness_timed};
    lock_conformance::conformance_tests!(
        harness_timed(&lock_azure::TABLE, azure_urls().await.map(|(_, table)| table), AZURITE_TIMING).await
    );
}

mod urls;
