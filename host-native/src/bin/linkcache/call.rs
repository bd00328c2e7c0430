//! `linkcache call`: target a function and call it with arguments from the command line.

use std::path::Path;
use std::process::ExitCode;

use linkcache_native::Error;
use linkcache_native::core::{FuncSig, Value};

use super::{Failure, open_cache};

pub(super) fn call(
    dir: &Path,
    func: &str,
    args: &[String],
    print_stats: bool,
) -> Result<ExitCode, Failure> {
    let cache = open_cache(dir)?;
    let result = (|| {
        let target = cache.target_dynamic(func)?;
        let values = parse_args(func, &target.signature, args)?;
        cache.call(func, &values)
    })();
    if print_stats {
        eprintln!(
            "{}",
            serde_json::to_string_pretty(&cache.stats()).expect("stats serialize")
        );
    }
    let results = result?;
    let text: Vec<String> = results.iter().map(Value::to_string).collect();
    println!("{}", text.join(" "));
    Ok(ExitCode::SUCCESS)
}

fn parse_args(func: &str, signature: &FuncSig, args: &[String]) -> Result<Vec<Value>, Error> {
    if args.len() != signature.params.len() {
        return Err(Error::BadArguments {
            function: func.into(),
            reason: format!(
                "it takes {} arguments ({signature}), got {}",
                signature.params.len(),
                args.len()
            ),
        });
    }
    args.iter()
        .zip(&signature.params)
        .map(|(arg, ty)| {
            Value::parse_literal(*ty, arg).ok_or_else(|| Error::BadArguments {
                function: func.into(),
                reason: format!("`{arg}` is not a {ty}"),
            })
        })
        .collect()
}
