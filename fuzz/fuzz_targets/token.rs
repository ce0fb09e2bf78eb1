#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kube_ldap_webhook_fuzz::token::run(data));
