//! lock-azure against Azurite (Microsoft's Azure Storage emulator, started here as a
//! plain process): the whole suite on Blob and on Table, and what a bad URL or a missing
//! credential says.

mod blob {
    lock_conformance::conformance_tests!(
        lock_conformance::fixtures::harness(&lock_azure::BLOB, lock_conformance::fixtures::azure_urls().await.map(|(blob, _)| blob)).await
    );
}

mod table {
    lock_conformance::conformance_tests!(
        lock_conformance::fixtures::harness(&lock_azure::TABLE, lock_conformance::fixtures::azure_urls().await.map(|(_, table)| table))
            .await
    );
}

mod urls;
