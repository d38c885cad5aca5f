//! Benchmarks: the replayed first-stage flow (flows per second, no card latency) and
//! certificate parsing.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use mynalink_card::trace::{Trace, TraceSource};
use mynalink_card::transport::{CertificateBytes, Recorder, Replay};
use mynalink_card::SigningPassword;
use mynalink_link::certificate::SigningCertificate;
use mynalink_link::trust::TrustStore;
use mynalink_link::{FirstStage, FlowInputs};
use mynalink_simcard::{sign_test_root_der, test_identity, SimOptions, SimTransport, Validity};

fn trust() -> TrustStore {
    let mut trust = TrustStore::new();
    trust
        .add_trust_anchor(sign_test_root_der())
        .expect("test root");
    trust
}

fn record_success() -> (Trace, FlowInputs) {
    let (recorder, handle) = Recorder::new(
        SimTransport::new(SimOptions::default()),
        TraceSource::Simulated,
        CertificateBytes::Withhold,
    );
    let inputs = FlowInputs::fresh("729913281070", "bench", None, None);
    let mut flow = FirstStage::new(recorder, inputs.clone(), trust()).expect("flow");
    run(&mut flow);
    (handle.snapshot(), inputs)
}

fn run<T: mynalink_card::Transport>(flow: &mut FirstStage<T>) {
    flow.check_card().expect("card");
    let password = SigningPassword::parse("TEST1234").expect("password");
    flow.verify_password(&password, false).expect("verify");
    flow.read_certificate().expect("certificate");
    flow.sign().expect("sign");
    flow.end();
}

fn replayed_flow(c: &mut Criterion) {
    let (trace, inputs) = record_success();
    let mut group = c.benchmark_group("flow");
    group.throughput(Throughput::Elements(1));
    group.bench_function("replayed_first_stage", |b| {
        b.iter(|| {
            let replay = Replay::new(trace.clone()).expect("replay");
            let mut flow = FirstStage::new(replay, inputs.clone(), trust()).expect("flow");
            run(&mut flow);
        })
    });
    group.finish();
}

fn certificate_parsing(c: &mut Criterion) {
    let der = test_identity(Validity::Current).sign_cert_der.clone();
    let mut group = c.benchmark_group("certificate");
    group.throughput(Throughput::Bytes(der.len() as u64));
    group.bench_function("parse", |b| {
        b.iter(|| SigningCertificate::parse(std::hint::black_box(&der)).expect("parse"))
    });
    group.bench_function("parse_with_basic4", |b| {
        b.iter(|| {
            let cert = SigningCertificate::parse(std::hint::black_box(&der)).expect("parse");
            cert.basic4().expect("basic4")
        })
    });
    group.finish();
}

criterion_group!(benches, replayed_flow, certificate_parsing);
criterion_main!(benches);
