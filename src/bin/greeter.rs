//! tonic's hello world server, as in tonic's examples (its generated Greeter, the stock
//! codec, `tonic::transport::Server`, the system allocator): the baseline that
//! `benches/unary-overhead.sh` measures EPOP's per-call cost against.
//!
//! `greeter [ADDR]` (default 127.0.0.1:50051); the runtime takes `TOKIO_WORKER_THREADS`.

use tonic::{Request, Response, Status, transport::Server};

mod pb {
    tonic::include_proto!("helloworld");
}

use pb::{
    HelloReply, HelloRequest,
    greeter_server::{Greeter, GreeterServer},
};

#[derive(Default)]
struct MyGreeter;

#[tonic::async_trait]
impl Greeter for MyGreeter {
    async fn say_hello(
        &self,
        request: Request<HelloRequest>,
    ) -> Result<Response<HelloReply>, Status> {
        let reply = HelloReply {
            message: format!("Hello {}!", request.into_inner().name),
        };
        Ok(Response::new(reply))
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:50051".into())
        .parse()?;
    Server::builder()
        .add_service(GreeterServer::new(MyGreeter))
        .serve(addr)
        .await?;
    Ok(())
}
