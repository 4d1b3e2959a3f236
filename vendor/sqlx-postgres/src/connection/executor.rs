use crate::describe::Describe;
use crate::error::Error;
use crate::executor::{Execute, Executor};
use crate::io::{PortalId, StatementId};
use crate::logger::QueryLogger;
use crate::message::{
    self, BackendMessageFormat, Bind, Close, CommandComplete, DataRow, EncodeMessage,
    ParameterDescription, Parse, ParseComplete, Query, RowDescription,
};
use crate::statement::PgStatementMetadata;
use crate::{
    statement::PgStatement, PgArguments, PgConnection, PgQueryResult, PgRow, PgTypeInfo,
    PgValueFormat, Postgres,
};
use futures_core::future::BoxFuture;
use futures_core::stream::BoxStream;
use futures_core::Stream;
use futures_util::TryStreamExt;
use sqlx_core::arguments::Arguments;
use sqlx_core::io::ProtocolEncode;
use sqlx_core::Either;
use std::{borrow::Cow, pin::pin, sync::Arc};

async fn prepare(
    conn: &mut PgConnection,
    sql: &str,
    parameters: &[PgTypeInfo],
    metadata: Option<Arc<PgStatementMetadata>>,
    persistent: bool,
) -> Result<(StatementId, Arc<PgStatementMetadata>), Error> {
    let id = if persistent {
        let id = conn.inner.next_statement_id;
        conn.inner.next_statement_id = id.next();
        id
    } else {
        StatementId::UNNAMED
    };

    // build a list of type OIDs to send to the database in the PARSE command
    // we have not yet started the query sequence, so we are *safe* to cleanly make
    // additional queries here to get any missing OIDs

    let mut param_types = Vec::with_capacity(parameters.len());

    for ty in parameters {
        param_types.push(conn.resolve_type_id(&ty.0).await?);
    }

    // flush and wait until we are re-ready
    conn.wait_until_ready().await?;

    // next we send the PARSE command to the server
    conn.inner.stream.write_msg(Parse {
        param_types: &param_types,
        query: sql,
        statement: id,
    })?;

    if metadata.is_none() {
        // get the statement columns and parameters
        conn.inner
            .stream
            .write_msg(message::Describe::Statement(id))?;
    }

    // we ask for the server to immediately send us the result of the PARSE command
    conn.write_sync();
    conn.inner.stream.flush().await?;

    // indicates that the SQL query string is now successfully parsed and has semantic validity
    conn.inner.stream.recv_expect::<ParseComplete>().await?;

    let metadata = if let Some(metadata) = metadata {
        // each SYNC produces one READY FOR QUERY
        conn.recv_ready_for_query().await?;

        // we already have metadata
        metadata
    } else {
        let parameters = recv_desc_params(conn).await?;

        let rows = recv_desc_rows(conn).await?;

        // each SYNC produces one READY FOR QUERY
        conn.recv_ready_for_query().await?;

        let parameters = conn.handle_parameter_description(parameters).await?;

        let (columns, column_names) = conn.handle_row_description(rows, true).await?;

        // ensure that if we did fetch custom data, we wait until we are fully ready before
        // continuing
        conn.wait_until_ready().await?;

        Arc::new(PgStatementMetadata {
            parameters,
            columns,
            column_names: Arc::new(column_names),
        })
    };

    Ok((id, metadata))
}

async fn recv_desc_params(conn: &mut PgConnection) -> Result<ParameterDescription, Error> {
    conn.inner.stream.recv_expect().await
}

async fn recv_desc_rows(conn: &mut PgConnection) -> Result<Option<RowDescription>, Error> {
    let rows: Option<RowDescription> = match conn.inner.stream.recv().await? {
        // describes the rows that will be returned when the statement is eventually executed
        message if message.format == BackendMessageFormat::RowDescription => {
            Some(message.decode()?)
        }

        // no data would be returned if this statement was executed
        message if message.format == BackendMessageFormat::NoData => None,

        message => {
            return Err(err_protocol!(
                "expecting RowDescription or NoData but received {:?}",
                message.format
            ));
        }
    };

    Ok(rows)
}

impl PgConnection {
    // wait for CloseComplete to indicate a statement was closed
    pub(super) async fn wait_for_close_complete(&mut self, mut count: usize) -> Result<(), Error> {
        // we need to wait for the [CloseComplete] to be returned from the server
        while count > 0 {
            match self.inner.stream.recv().await? {
                message if message.format == BackendMessageFormat::PortalSuspended => {
                    // there was an open portal
                    // this can happen if the last time a statement was used it was not fully executed
                }

                message if message.format == BackendMessageFormat::CloseComplete => {
                    // successfully closed the statement (and freed up the server resources)
                    count -= 1;
                }

                message => {
                    return Err(err_protocol!(
                        "expecting PortalSuspended or CloseComplete but received {:?}",
                        message.format
                    ));
                }
            }
        }

        Ok(())
    }

    #[inline(always)]
    pub(crate) fn write_sync(&mut self) {
        self.inner
            .stream
            .write_msg(message::Sync)
            .expect("BUG: Sync should not be too big for protocol");

        // all SYNC messages will return a ReadyForQuery
        self.inner.pending_ready_for_query_count += 1;
    }

    async fn get_or_prepare<'a>(
        &mut self,
        sql: &str,
        parameters: &[PgTypeInfo],
        persistent: bool,
        // optional metadata that was provided by the user, this means they are reusing
        // a statement object
        metadata: Option<Arc<PgStatementMetadata>>,
    ) -> Result<(StatementId, Arc<PgStatementMetadata>), Error> {
        if let Some(statement) = self.inner.cache_statement.get_mut(sql) {
            return Ok((*statement).clone());
        }

        let statement = prepare(self, sql, parameters, metadata, persistent).await?;

        if persistent && self.inner.cache_statement.is_enabled() {
            if let Some((id, _)) = self.inner.cache_statement.insert(sql, statement.clone()) {
                self.inner.stream.write_msg(Close::Statement(id))?;
                self.write_sync();

                self.inner.stream.flush().await?;

                self.wait_for_close_complete(1).await?;
                self.recv_ready_for_query().await?;
            }
        }

        Ok(statement)
    }

    pub(crate) async fn run<'e, 'c: 'e, 'q: 'e>(
        &'c mut self,
        query: &'q str,
        arguments: Option<PgArguments>,
        persistent: bool,
        metadata_opt: Option<Arc<PgStatementMetadata>>,
    ) -> Result<impl Stream<Item = Result<Either<PgQueryResult, PgRow>, Error>> + 'e, Error> {
        let mut logger = QueryLogger::new(query, self.inner.log_settings.clone());

        // before we continue, wait until we are "ready" to accept more queries
        self.wait_until_ready().await?;

        let mut metadata: Arc<PgStatementMetadata>;
        // Whether a `RowDescription` may name types this connection does not know yet, whose
        // rows then wait for the end of the answer (see below).
        let mut deferrable_columns = false;

        let format = if let Some(mut arguments) = arguments {
            // Check this before we write anything to the stream.
            //
            // Note: Postgres actually interprets this value as unsigned,
            // making the max number of parameters 65535, not 32767
            // https://github.com/launchbadge/sqlx/issues/3464
            // https://www.postgresql.org/docs/current/limits.html
            let num_params = u16::try_from(arguments.len()).map_err(|_| {
                err_protocol!(
                    "PgConnection::run(): too many arguments for query: {}",
                    arguments.len()
                )
            })?;

            // With the statement cache disabled (`statement_cache_capacity(0)`), a statement is
            // never named: a named statement that is not cached would never be closed, and
            // behind a transaction-pooling proxy another client would meet it.
            let persistent = persistent && self.inner.cache_statement.is_enabled();

            // An unnamed statement goes in the same flight as its execution: Parse, Bind,
            // Describe (the portal, for the columns), Execute, Close, Sync. One round trip
            // instead of two, and nothing waits on a `Sync` in between, so a transaction-pooling
            // proxy (PgBouncer, RDS Proxy) cannot hand the Bind to another server connection
            // than the Parse. The columns arrive as a `RowDescription` before the rows.
            let in_this_flight = !persistent
                && metadata_opt.is_none()
                && !self.inner.cache_statement.contains_key(query);

            let (statement, param_types) = if in_this_flight {
                let mut param_types = Vec::with_capacity(arguments.types.len());
                for ty in &arguments.types {
                    param_types.push(self.resolve_type_id(&ty.0).await?);
                }

                // Parse declares the parameters' types, and the server gives the parameters
                // exactly those: they are what the patches left by encoding (`Json<T>`'s
                // version byte, say) are filled from, as the two flights fill them from the
                // types the server describes.
                let declared = arguments.types.clone();
                arguments.apply_patches(self, &declared).await?;

                self.wait_until_ready().await?;

                metadata = Arc::new(PgStatementMetadata::default());

                (StatementId::UNNAMED, Some(param_types))
            } else {
                // prepare the statement if this our first time executing it
                // always return the statement ID here
                let (statement, metadata_) = self
                    .get_or_prepare(query, &arguments.types, persistent, metadata_opt)
                    .await?;

                metadata = metadata_;

                // patch holes created during encoding
                arguments.apply_patches(self, &metadata.parameters).await?;

                // consume messages till `ReadyForQuery` before bind and execute
                self.wait_until_ready().await?;

                (statement, None)
            };

            // The flight is encoded whole before any of it counts as written: should a message
            // fail to encode (a Bind too large for the protocol), none of it is left in the
            // buffer to go out ahead of the next statement.
            let write_buffer = self.inner.stream.write_buffer_mut();
            let flight = write_buffer.buf_mut();
            let start = flight.len();
            let encoded = encode_flight(
                flight,
                param_types.as_deref().map(|param_types| Parse {
                    param_types,
                    query,
                    statement: StatementId::UNNAMED,
                }),
                Bind {
                    portal: PortalId::UNNAMED,
                    statement,
                    formats: &[PgValueFormat::Binary],
                    num_params,
                    params: &arguments.buffer,
                    result_formats: &[PgValueFormat::Binary],
                },
            );
            match encoded {
                Ok(()) => {
                    let written = flight.len() - start;
                    write_buffer.advance(written);
                }
                Err(err) => {
                    flight.truncate(start);
                    return Err(err);
                }
            }

            // the flight ends with a Sync, which Postgres answers with a ReadyForQuery
            self.inner.pending_ready_for_query_count += 1;
            deferrable_columns = in_this_flight;

            // prepared statements are binary
            PgValueFormat::Binary
        } else {
            // Query will trigger a ReadyForQuery
            self.inner.stream.write_msg(Query(query))?;
            self.inner.pending_ready_for_query_count += 1;

            // metadata starts out as "nothing"
            metadata = Arc::new(PgStatementMetadata::default());

            // and unprepared statements are text
            PgValueFormat::Text
        };

        self.inner.stream.flush().await?;

        Ok(try_stream! {
            // A `RowDescription` read mid-answer can name a type only from the connection's
            // cache: no query can run until the answer ends. When it names types the cache
            // lacks (an enum, a composite, an array of them: the first time a connection
            // meets one, in the one-flight path), the rows wait for the `ReadyForQuery`, the
            // types are then looked up, and the rows go out with them, so that checked getters
            // (`try_get`) work as they do for a statement prepared first.
            let mut deferred: Option<(RowDescription, Vec<Either<PgQueryResult, DataRow>>)> = None;

            loop {
                let message = match self.inner.stream.recv().await {
                    Ok(message) => message,
                    Err(err) => {
                        // What was read before the error goes out first, as it can.
                        if let Some((desc, held)) = deferred.take() {
                            let (columns, column_names) =
                                self.handle_row_description(Some(desc), false).await?;
                            metadata = Arc::new(PgStatementMetadata {
                                column_names: Arc::new(column_names),
                                columns,
                                parameters: Vec::default(),
                            });
                            for item in held {
                                r#yield!(with_metadata(item, format, &metadata));
                            }
                        }
                        return Err(err);
                    }
                };

                match message.format {
                    BackendMessageFormat::BindComplete
                    | BackendMessageFormat::ParseComplete
                    | BackendMessageFormat::ParameterDescription
                    | BackendMessageFormat::NoData
                    // unnamed portal has been closed
                    | BackendMessageFormat::CloseComplete
                    => {
                        // harmless messages to ignore
                    }

                    // "Execute phase is always terminated by the appearance of
                    // exactly one of these messages: CommandComplete,
                    // EmptyQueryResponse (if the portal was created from an
                    // empty query string), ErrorResponse, or PortalSuspended"
                    BackendMessageFormat::CommandComplete => {
                        // a SQL command completed normally
                        let cc: CommandComplete = message.decode()?;

                        let rows_affected = cc.rows_affected();
                        logger.increase_rows_affected(rows_affected);
                        let done = PgQueryResult { rows_affected };
                        match &mut deferred {
                            Some((_, held)) => held.push(Either::Left(done)),
                            None => r#yield!(Either::Left(done)),
                        }
                    }

                    BackendMessageFormat::EmptyQueryResponse => {
                        // empty query string passed to an unprepared execute
                    }

                    // Message::ErrorResponse is handled in self.stream.recv()

                    // incomplete query execution has finished
                    BackendMessageFormat::PortalSuspended => {}

                    BackendMessageFormat::RowDescription => {
                        // indicates that a *new* set of rows are about to be returned
                        let desc: RowDescription = message.decode()?;
                        if deferrable_columns && !self.knows_the_types_of(&desc) {
                            deferred = Some((desc, Vec::new()));
                            continue;
                        }
                        let (columns, column_names) = self
                            .handle_row_description(Some(desc), false)
                            .await?;

                        metadata = Arc::new(PgStatementMetadata {
                            column_names: Arc::new(column_names),
                            columns,
                            parameters: Vec::default(),
                        });
                    }

                    BackendMessageFormat::DataRow => {
                        logger.increment_rows_returned();

                        // one of the set of rows returned by a SELECT, FETCH, etc query
                        let data: DataRow = message.decode()?;
                        if let Some((_, held)) = &mut deferred {
                            held.push(Either::Right(data));
                            continue;
                        }
                        let row = PgRow {
                            data,
                            format,
                            metadata: Arc::clone(&metadata),
                        };

                        r#yield!(Either::Right(row));
                    }

                    BackendMessageFormat::ReadyForQuery => {
                        // processing of the query string is complete
                        self.handle_ready_for_query(message)?;
                        if let Some((desc, held)) = deferred.take() {
                            // the connection is idle again: the types can be looked up now
                            let looked_up =
                                self.handle_row_description(Some(desc.clone()), true).await;
                            let (columns, column_names) = match looked_up {
                                Ok(found) => found,
                                Err(err) => {
                                    // The statement ran to its end: its rows go out first (the
                                    // unchecked getters read them), so that a caller never
                                    // takes a lookup's error for a statement that sent none.
                                    let (columns, column_names) =
                                        self.handle_row_description(Some(desc), false).await?;
                                    metadata = Arc::new(PgStatementMetadata {
                                        column_names: Arc::new(column_names),
                                        columns,
                                        parameters: Vec::default(),
                                    });
                                    for item in held {
                                        r#yield!(with_metadata(item, format, &metadata));
                                    }
                                    return Err(err);
                                }
                            };
                            metadata = Arc::new(PgStatementMetadata {
                                column_names: Arc::new(column_names),
                                columns,
                                parameters: Vec::default(),
                            });
                            for item in held {
                                r#yield!(with_metadata(item, format, &metadata));
                            }
                        }
                        break;
                    }

                    _ => {
                        return Err(err_protocol!(
                            "execute: unexpected message: {:?}",
                            message.format
                        ));
                    }
                }
            }

            Ok(())
        })
    }
}

/// Appends a statement's flight to `buf`: its Parse (when parsed in this flight), Bind,
/// Describe of the portal (when parsed in this flight, for the columns), Execute, Close of the
/// portal and Sync. On an error, `buf` may hold part of it: the caller drops what was appended.
fn encode_flight(buf: &mut Vec<u8>, parse: Option<Parse<'_>>, bind: Bind<'_>) -> Result<(), Error> {
    let in_this_flight = parse.is_some();
    if let Some(parse) = parse {
        EncodeMessage(parse).encode_with(buf, ())?;
    }
    // bind to attach the arguments to the statement and create a portal
    EncodeMessage(bind).encode_with(buf, ())?;
    if in_this_flight {
        // the columns of the statement parsed in this flight
        EncodeMessage(message::Describe::Portal(PortalId::UNNAMED)).encode_with(buf, ())?;
    }
    // executes the portal up to the passed limit
    // the protocol-level limit acts nearly identically to the `LIMIT` in SQL
    EncodeMessage(message::Execute {
        portal: PortalId::UNNAMED,
        // Non-zero limits cause query plan pessimization by disabling parallel workers:
        // https://github.com/launchbadge/sqlx/issues/3673
        limit: 0,
    })
    .encode_with(buf, ())?;
    // From https://www.postgresql.org/docs/current/protocol-flow.html:
    //
    // "An unnamed portal is destroyed at the end of the transaction, or as
    // soon as the next Bind statement specifying the unnamed portal as
    // destination is issued. (Note that a simple Query message also
    // destroys the unnamed portal."
    //
    // we ask the database server to close the unnamed portal and free the associated resources
    // earlier - after the execution of the current query.
    EncodeMessage(Close::Portal(PortalId::UNNAMED)).encode_with(buf, ())?;
    // finally, [Sync] asks postgres to process the messages that we sent and respond with
    // a [ReadyForQuery] message when it's completely done.
    EncodeMessage(message::Sync).encode_with(buf, ())
}

/// A held result, with the columns its rows are read with.
fn with_metadata(
    item: Either<PgQueryResult, DataRow>,
    format: PgValueFormat,
    metadata: &Arc<PgStatementMetadata>,
) -> Either<PgQueryResult, PgRow> {
    item.map_right(|data| PgRow {
        data,
        format,
        metadata: Arc::clone(metadata),
    })
}

impl PgConnection {
    /// Whether every column of `desc` has a type this connection can name without a query.
    fn knows_the_types_of(&self, desc: &RowDescription) -> bool {
        desc.fields.iter().all(|field| {
            PgTypeInfo::try_from_oid(field.data_type_id).is_some()
                || self.inner.cache_type_info.contains_key(&field.data_type_id)
        })
    }
}

impl<'c> Executor<'c> for &'c mut PgConnection {
    type Database = Postgres;

    fn fetch_many<'e, 'q, E>(
        self,
        mut query: E,
    ) -> BoxStream<'e, Result<Either<PgQueryResult, PgRow>, Error>>
    where
        'c: 'e,
        E: Execute<'q, Self::Database>,
        'q: 'e,
        E: 'q,
    {
        let sql = query.sql();
        // False positive: https://github.com/rust-lang/rust-clippy/issues/12560
        #[allow(clippy::map_clone)]
        let metadata = query.statement().map(|s| Arc::clone(&s.metadata));
        let arguments = query.take_arguments().map_err(Error::Encode);
        let persistent = query.persistent();

        Box::pin(try_stream! {
            let arguments = arguments?;
            let mut s = pin!(self.run(sql, arguments, persistent, metadata).await?);

            while let Some(v) = s.try_next().await? {
                r#yield!(v);
            }

            Ok(())
        })
    }

    fn fetch_optional<'e, 'q, E>(self, mut query: E) -> BoxFuture<'e, Result<Option<PgRow>, Error>>
    where
        'c: 'e,
        E: Execute<'q, Self::Database>,
        'q: 'e,
        E: 'q,
    {
        let sql = query.sql();
        // False positive: https://github.com/rust-lang/rust-clippy/issues/12560
        #[allow(clippy::map_clone)]
        let metadata = query.statement().map(|s| Arc::clone(&s.metadata));
        let arguments = query.take_arguments().map_err(Error::Encode);
        let persistent = query.persistent();

        Box::pin(async move {
            let arguments = arguments?;
            let mut s = pin!(self.run(sql, arguments, persistent, metadata).await?);

            // With deferred constraints we need to check all responses as we
            // could get a OK response (with uncommitted data), only to get an
            // error response after (when the deferred constraint is actually
            // checked).
            let mut ret = None;
            while let Some(result) = s.try_next().await? {
                match result {
                    Either::Right(r) if ret.is_none() => ret = Some(r),
                    _ => {}
                }
            }
            Ok(ret)
        })
    }

    fn prepare_with<'e, 'q: 'e>(
        self,
        sql: &'q str,
        parameters: &'e [PgTypeInfo],
    ) -> BoxFuture<'e, Result<PgStatement<'q>, Error>>
    where
        'c: 'e,
    {
        Box::pin(async move {
            self.wait_until_ready().await?;

            let (_, metadata) = self.get_or_prepare(sql, parameters, true, None).await?;

            Ok(PgStatement {
                sql: Cow::Borrowed(sql),
                metadata,
            })
        })
    }

    fn describe<'e, 'q: 'e>(
        self,
        sql: &'q str,
    ) -> BoxFuture<'e, Result<Describe<Self::Database>, Error>>
    where
        'c: 'e,
    {
        Box::pin(async move {
            self.wait_until_ready().await?;

            let (stmt_id, metadata) = self.get_or_prepare(sql, &[], true, None).await?;

            let nullable = self.get_nullable_for_columns(stmt_id, &metadata).await?;

            Ok(Describe {
                columns: metadata.columns.clone(),
                nullable,
                parameters: Some(Either::Left(metadata.parameters.clone())),
            })
        })
    }
}
