//! A server that accepts TCP connections and never answers: how a hung API server or model
//! server looks to a client. Connections stay open until the server is dropped.

pub struct Hung {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Hung {
    pub async fn start() -> Hung {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        Hung { url, task }
    }
}

impl Drop for Hung {
    fn drop(&mut self) {
        self.task.abort();
    }
}
