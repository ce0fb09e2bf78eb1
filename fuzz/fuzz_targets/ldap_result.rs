#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kube_ldap_webhook_fuzz::ldap_result::run(data));
