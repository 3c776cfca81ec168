fn main() {
    println!("whip-ingest: not yet implemented");
    std::process::exit(2)
}
