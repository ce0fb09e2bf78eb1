#![no_main]

libfuzzer_sys::fuzz_target!(
    init: kube_ldap_webhook_fuzz::config::scrub_env(),
    |data: &[u8]| kube_ldap_webhook_fuzz::config::run(data)
);
