// A signed-in session for clients: attaches the access token to every call and, when a
// unary call answers UNAUTHENTICATED, refreshes the token once and retries. In Node the
// refresh token is kept here; in browsers it stays in the HttpOnly `epop_refresh` cookie
// (leave `refreshToken` unset and send credentials). Concurrent refreshes share one call.
import {
  Code,
  ConnectError,
  createClient,
  type Client,
  type Interceptor,
  type Transport,
} from "@connectrpc/connect";
import { BinaryReader } from "@bufbuild/protobuf/wire";
import { AuthService } from "./gen/epop/v1/auth_pb.js";

export class Session {
  accessToken?: string;
  /** Node: the refresh token. Browsers: unset (the cookie is used). */
  refreshToken?: string;
  private readonly auth: Client<typeof AuthService>;
  private renewing?: Promise<void>;

  /** `transport` is used for AuthService calls (it must not carry this session's interceptor). */
  constructor(transport: Transport, private readonly keepRefreshToken = true) {
    this.auth = createClient(AuthService, transport);
  }

  async login(email: string, password: string): Promise<void> {
    const r = await this.auth.login({ email, password, returnRefreshToken: this.keepRefreshToken });
    this.accessToken = r.accessToken;
    if (this.keepRefreshToken) this.refreshToken = r.refreshToken;
  }

  /** Rotates the tokens (one call however many callers wait for it). */
  renew(): Promise<void> {
    this.renewing ??= (async () => {
      try {
        const r = await this.auth.refresh({
          refreshToken: this.refreshToken ?? "",
          returnRefreshToken: this.keepRefreshToken,
        });
        this.accessToken = r.accessToken;
        if (this.keepRefreshToken) this.refreshToken = r.refreshToken;
      } finally {
        this.renewing = undefined;
      }
    })();
    return this.renewing;
  }

  /** The interceptor: the token on every call; one refresh and retry on UNAUTHENTICATED. */
  readonly interceptor: Interceptor = (next) => async (req) => {
    const send = () => {
      if (this.accessToken) req.header.set("authorization", `Bearer ${this.accessToken}`);
      return next(req);
    };
    try {
      return await send();
    } catch (e) {
      const err = ConnectError.from(e);
      // A streamed request cannot be sent twice; AuthService answers for itself.
      if (err.code !== Code.Unauthenticated || req.stream || req.service.typeName === AuthService.typeName) {
        throw err;
      }
      await this.renew();
      return send();
    }
  };
}

/** A field the server refused, from a `google.rpc.BadRequest` error detail. */
export interface FieldViolation {
  field: string;
  description: string;
}

/** The field violations of an INVALID_ARGUMENT error (empty for other errors). */
export function fieldViolations(e: unknown): FieldViolation[] {
  const err = ConnectError.from(e);
  const out: FieldViolation[] = [];
  for (const d of err.details) {
    if (!("value" in d) || d.type !== "google.rpc.BadRequest") continue;
    // BadRequest { repeated FieldViolation field_violations = 1 }
    // FieldViolation { string field = 1; string description = 2 }
    const r = new BinaryReader(d.value);
    while (r.pos < r.len) {
      const [no, type] = r.tag();
      if (no !== 1) {
        r.skip(type);
        continue;
      }
      const v = new BinaryReader(r.bytes());
      const fv: FieldViolation = { field: "", description: "" };
      while (v.pos < v.len) {
        const [f, t] = v.tag();
        if (f === 1) fv.field = v.string();
        else if (f === 2) fv.description = v.string();
        else v.skip(t);
      }
      out.push(fv);
    }
  }
  return out;
}
