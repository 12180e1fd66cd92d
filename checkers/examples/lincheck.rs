//! Times the linearizability checker on files (parse excluded): `lincheck FORMAT MODEL FILE...`.

use faultline_checkers::{LinOptions, ModelKind, check_linearizable};
use faultline_history::{Format, pair, read_path};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let format = match args[1].as_str() {
        "edn" => Format::Edn,
        "porcupine-etcd" => Format::PorcupineEtcd,
        "porcupine-kv" => Format::PorcupineKv,
        _ => Format::Jsonl,
    };
    let model = match args[2].as_str() {
        "kv" => ModelKind::Kv,
        "mutex" => ModelKind::Mutex,
        "multi-register" => ModelKind::MultiRegister,
        "append" => ModelKind::Append,
        _ => ModelKind::CasRegister,
    };
    let mut total = 0.0;
    for f in &args[3..] {
        let (h, format) = read_path(std::path::Path::new(f), Some(format)).expect("read");
        let ops = pair(f, &h.events).expect("pair");
        let opts = LinOptions::for_format(format, model);
        let r = check_linearizable(&ops, &opts).expect("check");
        total += r.check_ms;
        println!(
            "{f}\t{}\t{:.2} ms\t{} steps\tshrink {:.1} ms",
            r.verdict.name(),
            r.check_ms,
            r.steps,
            r.shrink_ms
        );
    }
    println!("total {total:.1} ms");
}
