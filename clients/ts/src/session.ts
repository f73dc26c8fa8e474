// A signed-in session: one transport whose interceptor attaches the access token to every
// call; the token is refreshed shortly before it expires and, when a unary call still answers
// UNAUTHENTICATED, once more before the call is retried. In Node the refresh token is kept
// here (and handed to `onTokens`, to persist it); in browsers it stays in the HttpOnly
// `epop_refresh` cookie (`cookie: true`). Concurrent refreshes share one call.
import {
  Code,
  ConnectError,
  createClient,
  type Client,
  type Interceptor,
  type Transport,
} from "@connectrpc/connect";
import { timestampMs, type Timestamp } from "@bufbuild/protobuf/wkt";
import {
  AuthService,
  type LoginResponse,
  type SecondFactorChallenge,
} from "./gen/epop/v1/auth_pb.js";
import { BadRequestSchema, RetryInfoSchema } from "./gen/google/rpc/error_details_pb.js";

/** The tokens of a session, as the server last issued them. */
export interface Tokens {
  accessToken: string;
  /** When the access token expires (ms since the epoch). */
  accessTokenExpiresAt: number;
  /** Node: the refresh token (persist it to resume later). Browsers: empty (the cookie). */
  refreshToken: string;
}

/** How a session is made. */
export interface SessionOptions {
  /** Builds the one transport of the session, with the interceptors given (put them first). */
  transport: (interceptors: Interceptor[]) => Transport;
  /** Browsers: keep the refresh token in the HttpOnly cookie rather than in memory. */
  cookie?: boolean;
  /** Called with the new tokens after every sign-in and refresh (e.g. to persist them). */
  onTokens?: (tokens: Tokens) => void;
  /** Called when the session has ended: a refresh was refused (sign in again) or logout. */
  onExpired?: (error?: ConnectError) => void;
  /** Refresh this long before the access token expires (default 30 s). */
  refreshAheadMs?: number;
}

export class Session {
  /** The session's transport: give it to `createClient` for every service. */
  readonly transport: Transport;
  private tokens?: Tokens;
  private readonly auth: Client<typeof AuthService>;
  private renewing?: Promise<void>;
  /** The binder of a single sign-on this session started (browsers: its cookie instead). */
  private oidcBinder?: string;
  private timer?: ReturnType<typeof setTimeout>;

  constructor(private readonly o: SessionOptions) {
    this.transport = o.transport([this.interceptor]);
    this.auth = createClient(AuthService, this.transport);
  }

  /** Resumes a session from persisted tokens (Node: at least the refresh token). */
  resume(tokens: Tokens): void {
    this.accept(tokens);
  }

  /** The access token now, if signed in. */
  get accessToken(): string | undefined {
    return this.tokens?.accessToken;
  }

  /**
   * Signs in with a password. Answers undefined when signed in, or the challenge of a second
   * factor when the account has one (or must enrol one: `methods` is `["totp_enrollment"]`
   * and `enrollment` holds the authenticator to add): then call `verifySecondFactor`.
   */
  async login(email: string, password: string): Promise<SecondFactorChallenge | undefined> {
    const r = await this.auth.login({ email, password, returnRefreshToken: !this.o.cookie });
    if (r.secondFactor) return r.secondFactor;
    this.signedIn(r);
    return undefined;
  }

  /**
   * The second step of a sign-in: the challenge's `challenge` with a TOTP code, a recovery
   * code, or a passkey's answer to `passkeyOptionsJson` (in a browser:
   * `JSON.stringify((await navigator.credentials.get({ publicKey:
   * PublicKeyCredential.parseRequestOptionsFromJSON(JSON.parse(options)) })).toJSON())`). Answers the recovery codes when this sign-in enrolled a new authenticator
   * (show them once), else an empty list. A wrong code throws UNAUTHENTICATED; the challenge
   * allows five tries in five minutes.
   */
  async verifySecondFactor(
    challenge: string,
    proof: { code: string } | { recoveryCode: string } | { passkeyJson: string },
  ): Promise<string[]> {
    const r = await this.auth.verifySecondFactor({
      challenge,
      code: "code" in proof ? proof.code : "",
      recoveryCode: "recoveryCode" in proof ? proof.recoveryCode : "",
      passkeyJson: "passkeyJson" in proof ? proof.passkeyJson : "",
      returnRefreshToken: !this.o.cookie,
    });
    this.signedIn(r);
    return r.recoveryCodes;
  }

  /**
   * Starts single sign-on with `provider` (an id from ListSignInProviders): asks the server
   * for the provider's authorization URL and hands it to `navigate` (in a browser,
   * `(url) => location.assign(url)`). The provider sends the browser back to the configured
   * redirect URI, whose page calls `finishSingleSignOn`.
   */
  async startSingleSignOn(provider: string, navigate: (url: string) => void | Promise<void>): Promise<void> {
    const r = await this.auth.startOidcSignIn({ provider });
    // Browsers keep the binder in an HttpOnly cookie, which survives the redirect; other
    // clients (whose session object does) send it back themselves.
    this.oidcBinder = this.o.cookie ? undefined : r.binder;
    await navigate(r.authorizationUrl);
  }

  /**
   * Finishes single sign-on on the redirect URI's page: `callback` is that page's URL (in a
   * browser, `location.href`), whose `code` and `state` the server checks, with the binder of
   * the client that started it. Signs in as a password sign-in does (the refresh cookie in
   * browsers); or, when the account has a second factor, answers its challenge for
   * `verifySecondFactor`. A provider's error (e.g. the user declined) is thrown as
   * PERMISSION_DENIED with its description.
   */
  async finishSingleSignOn(callback: string | URL): Promise<SecondFactorChallenge | undefined> {
    const q = new URL(callback).searchParams;
    const error = q.get("error");
    if (error) {
      throw new ConnectError(q.get("error_description") ?? error, Code.PermissionDenied);
    }
    const r = await this.auth.finishOidcSignIn({
      code: q.get("code") ?? "",
      state: q.get("state") ?? "",
      returnRefreshToken: !this.o.cookie,
      binder: this.oidcBinder ?? "",
    });
    this.oidcBinder = undefined;
    if (r.secondFactor) return r.secondFactor;
    this.signedIn(r);
    return undefined;
  }

  private signedIn(r: LoginResponse): void {
    this.accept({
      accessToken: r.accessToken,
      accessTokenExpiresAt: expiry(r.accessTokenExpireTime),
      refreshToken: r.refreshToken,
    });
  }

  /** Rotates the tokens (one call however many callers wait for it). */
  renew(): Promise<void> {
    this.renewing ??= (async () => {
      try {
        const r = await this.auth.refresh({
          refreshToken: this.tokens?.refreshToken ?? "",
          returnRefreshToken: !this.o.cookie,
        });
        this.accept({
          accessToken: r.accessToken,
          accessTokenExpiresAt: expiry(r.accessTokenExpireTime),
          refreshToken: this.o.cookie ? "" : r.refreshToken,
        });
      } catch (e) {
        const err = ConnectError.from(e);
        if (err.code === Code.Unauthenticated) this.end(err);
        throw err;
      } finally {
        this.renewing = undefined;
      }
    })();
    return this.renewing;
  }

  /** Signs out: the server ends the session (its streams too); the tokens are forgotten. */
  async logout(): Promise<void> {
    try {
      await this.auth.logout({ refreshToken: this.tokens?.refreshToken ?? "" });
    } finally {
      this.end();
    }
  }

  private accept(tokens: Tokens): void {
    this.tokens = tokens;
    this.o.onTokens?.(tokens);
    clearTimeout(this.timer);
    const ahead = this.o.refreshAheadMs ?? 30_000;
    const due = tokens.accessTokenExpiresAt - ahead - Date.now();
    if (tokens.accessTokenExpiresAt > 0 && due > 0) {
      this.timer = setTimeout(() => void this.renew().catch(() => {}), due);
      // A pending refresh does not keep a Node process alive.
      (this.timer as { unref?: () => void }).unref?.();
    }
  }

  private end(error?: ConnectError): void {
    clearTimeout(this.timer);
    this.tokens = undefined;
    this.o.onExpired?.(error);
  }

  /** The interceptor: the token on every call; one refresh and retry on UNAUTHENTICATED. */
  private readonly interceptor: Interceptor = (next) => async (req) => {
    const send = () => {
      const token = this.tokens?.accessToken;
      if (token) req.header.set("authorization", `Bearer ${token}`);
      return next(req);
    };
    try {
      return await send();
    } catch (e) {
      const err = ConnectError.from(e);
      // A streamed request cannot be sent twice; AuthService answers for itself.
      if (
        err.code !== Code.Unauthenticated ||
        req.stream ||
        req.service.typeName === AuthService.typeName
      ) {
        throw err;
      }
      await this.renew();
      return send();
    }
  };
}

function expiry(t: Timestamp | undefined): number {
  return t ? timestampMs(t) : 0;
}

/** A field the server refused, from a `google.rpc.BadRequest` error detail. */
export interface FieldViolation {
  field: string;
  description: string;
}

/** The field violations of an INVALID_ARGUMENT error (empty for other errors). */
export function fieldViolations(e: unknown): FieldViolation[] {
  return ConnectError.from(e)
    .findDetails(BadRequestSchema)
    .flatMap((d) => d.fieldViolations.map(({ field, description }) => ({ field, description })));
}

/**
 * How long the server asked to wait before retrying, in ms: its `google.rpc.RetryInfo` detail,
 * or its `retry-after` header (seconds); undefined when it said nothing.
 */
export function retryDelayMs(e: unknown): number | undefined {
  const err = ConnectError.from(e);
  const d = err.findDetails(RetryInfoSchema)[0]?.retryDelay;
  if (d) return Number(d.seconds) * 1000 + Math.round(d.nanos / 1e6);
  const header = Number(err.metadata.get("retry-after"));
  return header > 0 ? header * 1000 : undefined;
}
