// swift-tools-version:5.9
// The generated Connect-Swift client of every EPOP service (Generated/, from
// `buf generate proto --template clients/swift/buf.gen.yaml -o clients/swift` with
// protoc-gen-swift 1.37.0 and protoc-gen-connect-swift 1.2.3 on PATH), as a Swift package an
// app depends on. The versions are exact: the generated code and the runtimes must agree
// (clients/versions.env).
import PackageDescription

let package = Package(
    name: "EpopClient",
    platforms: [.iOS(.v15), .macOS(.v12)],
    products: [.library(name: "EpopClient", targets: ["EpopClient"])],
    dependencies: [
        .package(url: "https://github.com/connectrpc/connect-swift.git", exact: "1.2.3"),
        .package(url: "https://github.com/apple/swift-protobuf.git", exact: "1.37.0"),
    ],
    targets: [
        .target(
            name: "EpopClient",
            dependencies: [
                .product(name: "Connect", package: "connect-swift"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            path: "Generated"
        ),
    ]
)
