//! The `Models` service: what this daemon serves.

use super::proto::{self, models_server::Models};
use super::registry::Daemon;
use std::sync::Arc;
use tonic::{Request, Response, Status};

pub struct ModelsService {
    pub daemon: Arc<Daemon>,
}

#[tonic::async_trait]
impl Models for ModelsService {
    async fn list_models(
        &self,
        _request: Request<proto::ListModelsRequest>,
    ) -> Result<Response<proto::ListModelsResponse>, Status> {
        let models = self
            .daemon
            .models()?
            .iter()
            .map(|m| m.card.clone())
            .collect();
        Ok(Response::new(proto::ListModelsResponse { models }))
    }

    async fn describe_model(
        &self,
        request: Request<proto::DescribeModelRequest>,
    ) -> Result<Response<proto::ModelCard>, Status> {
        let served = self.daemon.model(&request.get_ref().model)?;
        Ok(Response::new(served.card.clone()))
    }
}
