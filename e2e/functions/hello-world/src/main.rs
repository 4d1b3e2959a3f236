//! Test-only (never in template.yaml): the smallest `lambda_http` function, answering every
//! request with a fixed body. `make bench` runs it beside the real functions: the runtime's own
//! cost per invocation, which no handler can go below.

use lambda_http::{run, service_fn, Body, Error, Request, Response};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    run(service_fn(|_: Request| async {
        Ok::<_, Error>(Response::new(Body::from("hello")))
    }))
    .await
}
