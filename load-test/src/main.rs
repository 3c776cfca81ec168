fn main() {
    println!("load-test: not yet implemented");
    std::process::exit(2)
}
