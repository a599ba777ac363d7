//! The floor as a program of its own: `floor IN OUT THREADS` (see mod.rs).
//! The cli benchmark compiles this file with `rustc -O` (std only, a small
//! binary) and runs it beside `sandpool run`.

#[path = "mod.rs"]
mod floor;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut with_cmd = vec!["floor".to_string()];
    with_cmd.extend(args);
    match floor::main_if_floor(&with_cmd) {
        Some(code) => std::process::exit(code),
        None => {
            eprintln!("usage: floor INPUTS OUT THREADS");
            std::process::exit(2);
        }
    }
}
