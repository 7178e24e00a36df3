//! A function in the shape of the product page's `call_openai`, reading its
//! secrets at run time through `ctx.secrets` — never from the bundle.
//! (The request is built, not sent.)
//!
//! ```console
//! $ FLUX_SECRETS_SOCKET=/run/flux/projects/my-app.sock cargo run -p flux-protocol --example call_openai
//! ```

use flux_protocol::ClientError;
use flux_protocol::blocking::Secrets;
use std::process::ExitCode;

fn main() -> ExitCode {
    match call_openai() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("call_openai: {e}");
            ExitCode::FAILURE
        }
    }
}

fn call_openai() -> Result<(), ClientError> {
    // ctx.secrets
    let secrets = Secrets::from_env()?;
    // Retrieved at runtime — not baked into the bundle.
    let api_key = secrets.get("OPENAI_API_KEY")?;
    let region = secrets.get_or("AWS_REGION", "us-east-1")?;
    let authorization = format!("Bearer {api_key}");
    // Report the shape of the request, never the key itself.
    println!(
        "POST https://api.openai.com/v1/chat/completions with a {}-character Authorization header; region {}",
        authorization.len(),
        if region == "us-east-1" {
            "us-east-1 (fallback)"
        } else {
            "from secrets"
        }
    );
    Ok(())
}
